/**
 * A small deterministic PRNG for fuzz tests (mulberry32: 32-bit state, fast, good enough to pick
 * mutations). Every case gets its own generator derived from (run seed, stream, index), so one failing
 * case can be replayed alone from the printed seed and its index.
 */
import { randomInt } from 'node:crypto';

/** splitmix32-style finaliser: spreads nearby inputs over the whole 32-bit range. */
export function mix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

export class Prng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A generator for case `index` of stream `stream` under run seed `seed`. */
  static forCase(seed: number, stream: number, index: number): Prng {
    return new Prng(mix32(mix32(mix32(seed) ^ stream) ^ index));
  }

  /** Uniform uint32. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** Uniform integer in [min, max] (both inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(0, items.length - 1)]!;
  }

  /** Picks a key of `weights` with probability proportional to its weight. */
  weighted<K extends string>(weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as [K, number][];
    let r = this.float() * entries.reduce((s, [, w]) => s + w, 0);
    for (const [k, w] of entries) if ((r -= w) < 0) return k;
    return entries[entries.length - 1]![0];
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    let i = 0;
    for (; i + 4 <= n; i += 4) b.writeUInt32LE(this.next(), i);
    for (; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/**
 * The run seed: `name` from the environment (decimal or 0x-hex, or "random" for a fresh one). Unset,
 * a fixed seed, so the suite (and CI) is reproducible; exploring more is `SIGHTLINE_FUZZ_SEED=random`.
 * It is printed, so a failing run can be replayed.
 */
export const DEFAULT_FUZZ_SEED = 20261122;

export function seedFromEnv(name = 'SIGHTLINE_FUZZ_SEED'): number {
  const raw = process.env[name]?.trim();
  if (!raw) return DEFAULT_FUZZ_SEED;
  if (raw === 'random') return randomInt(0, 2 ** 32);
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff)
    throw new Error(`${name} must be an integer in [0, 2^32), got "${raw}"`);
  return n >>> 0;
}

/** A positive integer from the environment, or `fallback`. */
export function positiveIntFromEnv(name: string, fallback: number): number {
  const raw = process.env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got "${raw}"`);
  return n;
}
