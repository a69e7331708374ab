/** Argument parsers shared by the CLI commands: they fail with a clear message instead of NaN. */
import { InvalidArgumentError } from 'commander';
import { accessSync, constants, statSync } from 'node:fs';
import { SightlineError } from '../errors.js';
import { describeError } from './errors.js';

export function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got "${v}"`);
  return n;
}

export function fractionArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError(`expected a number in [0, 1], got "${v}"`);
  return n;
}

export function intListArg(v: string): number[] {
  return v.split(',').map((s) => intArg(s.trim()));
}

/** Throws INVALID_INPUT (`--image x.jpg: no such file or directory`) unless `path` is a readable file. */
export function assertReadableFile(what: string, path: string): void {
  try {
    accessSync(path, constants.R_OK);
    if (!statSync(path).isFile()) throw new SightlineError('INVALID_INPUT', `${what} ${path}: not a file`);
  } catch (e) {
    if (e instanceof SightlineError) throw e;
    throw new SightlineError('INVALID_INPUT', `${what} ${describeError(e)}`, { path }, { cause: e });
  }
}

/** A duration: "90" or "90s" (seconds), "500ms", "5m", "1h"; in milliseconds. */
export function durationArg(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 90s, 5m or 500ms, got "${v}"`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (ms < 1 || ms > 0xffffffff) throw new InvalidArgumentError(`duration "${v}" is out of range`);
  return Math.round(ms);
}
