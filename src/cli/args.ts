/** Argument parsers shared by the CLI commands: they fail with a clear message instead of NaN. */
import { InvalidArgumentError } from 'commander';

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
