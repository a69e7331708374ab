/** Argument parsers shared by the CLI commands: they fail with a clear message instead of NaN. */
import { InvalidArgumentError } from 'commander';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
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

/**
 * The one check of every path a command is given (a flag, an argument, a config key; `what` names it
 * as the user wrote it): INVALID_INPUT, so exit status 2 and one line such as
 * `--token-file x: no such file or directory` or `dataset folder d: not a directory`, unless `path`
 * is a readable directory, or for a file anything readable but a directory (a pipe such as
 * `--token-file <(pass show sightline)` is a file here).
 */
export function assertReadablePath(what: string, path: string, kind: 'file' | 'directory' = 'file'): void {
  try {
    accessSync(path, constants.R_OK);
    const directory = statSync(path).isDirectory();
    if (directory !== (kind === 'directory'))
      throw new SightlineError(
        'INVALID_INPUT',
        `${what} ${path}: ${directory ? 'is a directory' : 'not a directory'}`,
        {
          path,
        },
      );
  } catch (e) {
    if (e instanceof SightlineError) throw e;
    throw new SightlineError('INVALID_INPUT', `${what} ${describeError(e)}`, { path }, { cause: e });
  }
}

/** assertReadablePath for a file (`--image x.jpg: no such file or directory`). */
export const assertReadableFile = (what: string, path: string): void => assertReadablePath(what, path, 'file');

/** assertReadablePath for a directory. */
export const assertReadableDir = (what: string, path: string): void => assertReadablePath(what, path, 'directory');

/** A file's bytes after assertReadableFile, so a missing or unreadable one is reported the same way. */
export function readFileArg(what: string, path: string): Buffer {
  assertReadableFile(what, path);
  return readFileSync(path);
}

/** A duration: "90" or "90s" (seconds), "500ms", "5m", "1h"; in milliseconds. */
export function durationArg(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(v.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 90s, 5m or 500ms, got "${v}"`);
  const ms = Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  if (ms < 1 || ms > 0xffffffff) throw new InvalidArgumentError(`duration "${v}" is out of range`);
  return Math.round(ms);
}
