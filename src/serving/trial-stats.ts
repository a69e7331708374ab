/**
 * What replicas count while a candidate version is tried beside the active one, as plain JSON that
 * travels in their reports (fleet.ts) and that the registry sums over replicas: a shadow's per-image
 * comparisons (eval/compare.ts) and drops, and a canary's requests, errors and latency per arm.
 * Pure: tallies are cumulative per process, merged by addition, and summarised on demand. Histograms
 * are sparse and log-bucketed, so percentiles survive merging (within one bucket: 5 %).
 */
import { SightlineError } from '../errors.js';
import type { ImageComparison } from '../eval/index.js';

/** Sparse histogram: bucket index (as text: JSON keys) → count. */
export type Histogram = Record<string, number>;

/** Latency bucket i holds [FLOOR_MS·GROWTH^(i−1), FLOOR_MS·GROWTH^i); bucket 0 everything below FLOOR_MS. */
const FLOOR_MS = 0.1;
const GROWTH = 1.05;
/** 0.1 ms … about 10 min. */
const MAX_BUCKET = 320;

export function addLatency(h: Histogram, ms: number): void {
  const i = ms < FLOOR_MS ? 0 : Math.min(MAX_BUCKET, 1 + Math.floor(Math.log(ms / FLOOR_MS) / Math.log(GROWTH)));
  h[i] = (h[i] ?? 0) + 1;
}

/** The latency below which a share q of the samples fall (the upper edge of that bucket); NaN when empty. */
export function latencyQuantile(h: Histogram, q: number): number {
  const i = quantileBucket(h, q);
  return i === null ? Number.NaN : FLOOR_MS * GROWTH ** i;
}

/** Agreement bucket: floor(agreement × 100), so 1.0 has a bucket of its own. */
const agreementBucket = (a: number) => Math.min(100, Math.max(0, Math.floor(a * 100 + 1e-9)));

function quantileBucket(h: Histogram, q: number): number | null {
  const entries = Object.entries(h)
    .map(([k, n]) => [Number(k), n] as const)
    .sort((a, b) => a[0] - b[0]);
  const total = entries.reduce((s, [, n]) => s + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const [i, n] of entries) {
    seen += n;
    if (seen >= rank) return i;
  }
  return entries.at(-1)![0];
}

function mergeHistogram(into: Histogram, from: Histogram): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

/** Why a sampled request was not compared. busy/expired: no idle worker (pool.ts); not_loaded: the candidate is not warm on the replica. */
export const DROP_REASONS = ['busy', 'expired', 'not_loaded'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** One serving process's shadow counts: cumulative since it started on the trial. */
export interface ShadowTally {
  /** Images answered by both versions and compared. */
  samples: number;
  /** Sampled, but the candidate failed on the image (the live answer was unaffected). */
  failed: number;
  dropped: Partial<Record<DropReason, number>>;
  agreementSum: number;
  /** Histogram of per-image agreement in 1 % buckets. */
  agreement: Histogram;
  matched: number;
  confidenceShiftSum: number;
  /** Class id → [matched, active only, candidate only]. */
  classes: Record<string, [number, number, number]>;
  /** Images whose live answer ran on a one-thread session like the shadow run: only these latencies are compared. */
  latencyPairs: number;
  activeMs: Histogram;
  candidateMs: Histogram;
  activeMsSum: number;
  candidateMsSum: number;
}

export interface ArmTally {
  requests: number;
  /** Requests that failed for a reason of the server's (not the client's input, not a refusal at capacity). */
  errors: number;
  ms: Histogram;
}

/** One serving process's canary counts: requests that named no version, split by the canary's hash. */
export interface CanaryTally {
  baseline: ArmTally;
  canary: ArmTally;
}

/**
 * A tally as it travels in a report. `incarnation` names the process that counted it (a random id drawn
 * when it started): the registry keeps the latest tally of each process and sums them, so a restarted
 * replica, whose counts start again from zero, adds to the evidence instead of replacing it.
 */
export type TrialTally = { trialId: number; model: string; incarnation: string } & (
  { kind: 'shadow'; shadow: ShadowTally } | { kind: 'canary'; canary: CanaryTally }
);

export const emptyShadowTally = (): ShadowTally => ({
  samples: 0,
  failed: 0,
  dropped: {},
  agreementSum: 0,
  agreement: {},
  matched: 0,
  confidenceShiftSum: 0,
  classes: {},
  latencyPairs: 0,
  activeMs: {},
  candidateMs: {},
  activeMsSum: 0,
  candidateMsSum: 0,
});

export const emptyCanaryTally = (): CanaryTally => ({
  baseline: { requests: 0, errors: 0, ms: {} },
  canary: { requests: 0, errors: 0, ms: {} },
});

/** Adds one compared image; `latency`: both service times (ms) when they are comparable. */
export function addComparison(
  t: ShadowTally,
  c: ImageComparison,
  latency: { activeMs: number; candidateMs: number } | null,
): void {
  t.samples++;
  t.agreementSum += c.agreement;
  const b = agreementBucket(c.agreement);
  t.agreement[b] = (t.agreement[b] ?? 0) + 1;
  t.matched += c.matched;
  t.confidenceShiftSum += c.confidenceShiftSum;
  for (const [cls, d] of c.classes) {
    const e = (t.classes[cls] ??= [0, 0, 0]);
    e[0] += d.matched;
    e[1] += d.activeOnly;
    e[2] += d.candidateOnly;
  }
  if (latency) {
    t.latencyPairs++;
    addLatency(t.activeMs, latency.activeMs);
    addLatency(t.candidateMs, latency.candidateMs);
    t.activeMsSum += latency.activeMs;
    t.candidateMsSum += latency.candidateMs;
  }
}

export function addDrop(t: ShadowTally, reason: DropReason): void {
  t.dropped[reason] = (t.dropped[reason] ?? 0) + 1;
}

export function addCanaryRequest(t: CanaryTally, arm: 'baseline' | 'canary', ms: number, failed: boolean): void {
  const a = t[arm];
  a.requests++;
  if (failed) a.errors++;
  else addLatency(a.ms, ms);
}

export function mergeShadow(tallies: readonly ShadowTally[]): ShadowTally {
  const t = emptyShadowTally();
  for (const x of tallies) {
    t.samples += x.samples;
    t.failed += x.failed;
    for (const [k, n] of Object.entries(x.dropped))
      t.dropped[k as DropReason] = (t.dropped[k as DropReason] ?? 0) + (n ?? 0);
    t.agreementSum += x.agreementSum;
    mergeHistogram(t.agreement, x.agreement);
    t.matched += x.matched;
    t.confidenceShiftSum += x.confidenceShiftSum;
    for (const [cls, [m, a, c]] of Object.entries(x.classes)) {
      const e = (t.classes[cls] ??= [0, 0, 0]);
      e[0] += m;
      e[1] += a;
      e[2] += c;
    }
    t.latencyPairs += x.latencyPairs;
    mergeHistogram(t.activeMs, x.activeMs);
    mergeHistogram(t.candidateMs, x.candidateMs);
    t.activeMsSum += x.activeMsSum;
    t.candidateMsSum += x.candidateMsSum;
  }
  return t;
}

export function mergeCanary(tallies: readonly CanaryTally[]): CanaryTally {
  const t = emptyCanaryTally();
  for (const x of tallies) {
    for (const arm of ['baseline', 'canary'] as const) {
      t[arm].requests += x[arm].requests;
      t[arm].errors += x[arm].errors;
      mergeHistogram(t[arm].ms, x[arm].ms);
    }
  }
  return t;
}

export interface ClassSummary {
  readonly classId: number;
  readonly name: string;
  readonly matched: number;
  /** Boxes the candidate misses (only the active version found them). */
  readonly missing: number;
  /** Boxes the candidate adds. */
  readonly extra: number;
}

export interface ShadowSummary {
  readonly samples: number;
  readonly failed: number;
  readonly dropped: Readonly<Partial<Record<DropReason, number>>>;
  readonly droppedTotal: number;
  /** null without samples. */
  readonly agreementMean: number | null;
  readonly agreementP10: number | null;
  readonly matched: number;
  /** Mean of candidate − active confidence over matched boxes; null when none matched. */
  readonly confidenceShift: number | null;
  /** Classes with a box in either answer, the largest difference (missing + extra) first. */
  readonly classes: readonly ClassSummary[];
  /** Over comparable pairs only (see ShadowTally.latencyPairs); null when there are none. */
  readonly latency: {
    pairs: number;
    activeMeanMs: number;
    candidateMeanMs: number;
    activeP99Ms: number;
    candidateP99Ms: number;
    ratio: number;
  } | null;
}

export function summarizeShadow(t: ShadowTally, names: readonly string[]): ShadowSummary {
  const droppedTotal = Object.values(t.dropped).reduce((s, n) => s + (n ?? 0), 0);
  const p10 = quantileBucket(t.agreement, 0.1);
  const classes = Object.entries(t.classes)
    .map(([k, [matched, missing, extra]]) => ({
      classId: Number(k),
      name: names[Number(k)] ?? `class ${k}`,
      matched,
      missing,
      extra,
    }))
    .sort((a, b) => b.missing + b.extra - (a.missing + a.extra) || a.classId - b.classId);
  const activeMeanMs = t.activeMsSum / (t.latencyPairs || 1);
  const candidateMeanMs = t.candidateMsSum / (t.latencyPairs || 1);
  return {
    samples: t.samples,
    failed: t.failed,
    dropped: { ...t.dropped },
    droppedTotal,
    agreementMean: t.samples ? t.agreementSum / t.samples : null,
    agreementP10: p10 === null ? null : p10 / 100,
    matched: t.matched,
    confidenceShift: t.matched ? t.confidenceShiftSum / t.matched : null,
    classes,
    latency: t.latencyPairs
      ? {
          pairs: t.latencyPairs,
          activeMeanMs,
          candidateMeanMs,
          activeP99Ms: latencyQuantile(t.activeMs, 0.99),
          candidateP99Ms: latencyQuantile(t.candidateMs, 0.99),
          ratio: candidateMeanMs / activeMeanMs,
        }
      : null,
  };
}

export interface ArmSummary {
  readonly requests: number;
  readonly errors: number;
  readonly errorRate: number;
  /** NaN without successful requests. */
  readonly p50Ms: number;
  readonly p99Ms: number;
}

export interface CanarySummary {
  readonly baseline: ArmSummary;
  readonly canary: ArmSummary;
}

const arm = (a: ArmTally): ArmSummary => ({
  requests: a.requests,
  errors: a.errors,
  errorRate: a.requests ? a.errors / a.requests : 0,
  p50Ms: latencyQuantile(a.ms, 0.5),
  p99Ms: latencyQuantile(a.ms, 0.99),
});

export const summarizeCanary = (t: CanaryTally): CanarySummary => ({
  baseline: arm(t.baseline),
  canary: arm(t.canary),
});

/** A canary's rollback rule: how much worse the candidate may be, once each arm has minSamples requests. */
export interface CanaryMargins {
  readonly minSamples: number;
  /** Roll back when canary p99 > (1 + p99Margin) × baseline p99. */
  readonly p99Margin: number;
  /** Roll back when canary error rate > baseline error rate + errorRateMargin. */
  readonly errorRateMargin: number;
}

/** Why the canary must be rolled back, or null (worse within the margins, or too few requests yet). */
export function canaryVerdict(s: CanarySummary, m: CanaryMargins): string | null {
  const { baseline: b, canary: c } = s;
  if (b.requests < m.minSamples || c.requests < m.minSamples) return null;
  const over = `over ${c.requests} canary and ${b.requests} baseline requests`;
  if (c.errorRate > b.errorRate + m.errorRateMargin) {
    return `canary error rate ${pct(c.errorRate)} is above the baseline's ${pct(b.errorRate)} + ${pct(m.errorRateMargin)} (canary.errorRateMargin), ${over}`;
  }
  if (Number.isFinite(c.p99Ms) && Number.isFinite(b.p99Ms) && c.p99Ms > (1 + m.p99Margin) * b.p99Ms) {
    return (
      `canary p99 ${c.p99Ms.toFixed(0)} ms is above ${(1 + m.p99Margin).toFixed(2)} × the ` +
      `baseline's p99 ${b.p99Ms.toFixed(0)} ms (canary.p99Margin ${m.p99Margin}), ${over}`
    );
  }
  return null;
}

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;

// ---- reading tallies sent by replicas ----

const bad = (why: string) => new SightlineError('INVALID_INPUT', `a replica's trial tally is malformed: ${why}`);

function count(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) throw bad(`${what} is not a non-negative number`);
  return x;
}

function finite(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) throw bad(`${what} is not a number`);
  return x;
}

function record(x: unknown, what: string): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw bad(`${what} is not an object`);
  return x as Record<string, unknown>;
}

function histogram(x: unknown, what: string): Histogram {
  const out: Histogram = {};
  for (const [k, n] of Object.entries(record(x, what))) {
    if (!/^\d{1,4}$/.test(k)) throw bad(`${what} has bucket "${k.slice(0, 20)}"`);
    out[k] = count(n, `${what}[${k}]`);
  }
  return out;
}

/** A tally as JSON from a replica, checked field by field (the registry sums them: garbage must not get in). */
export function parseTally(kind: 'shadow' | 'canary', json: unknown): ShadowTally | CanaryTally {
  const o = record(json, kind);
  if (kind === 'canary') {
    const armOf = (x: unknown, name: string): ArmTally => {
      const a = record(x, name);
      return {
        requests: count(a.requests, `${name}.requests`),
        errors: count(a.errors, `${name}.errors`),
        ms: histogram(a.ms, `${name}.ms`),
      };
    };
    return { baseline: armOf(o.baseline, 'baseline'), canary: armOf(o.canary, 'canary') };
  }
  const dropped: ShadowTally['dropped'] = {};
  for (const [k, n] of Object.entries(record(o.dropped, 'dropped'))) {
    if (!(DROP_REASONS as readonly string[]).includes(k)) throw bad(`unknown drop reason "${k.slice(0, 20)}"`);
    dropped[k as DropReason] = count(n, `dropped.${k}`);
  }
  const classes: ShadowTally['classes'] = {};
  for (const [k, v] of Object.entries(record(o.classes, 'classes'))) {
    if (!/^\d{1,5}$/.test(k) || !Array.isArray(v) || v.length !== 3)
      throw bad(`classes["${k.slice(0, 20)}"] is not [matched, activeOnly, candidateOnly]`);
    classes[k] = [count(v[0], 'matched'), count(v[1], 'activeOnly'), count(v[2], 'candidateOnly')];
  }
  return {
    samples: count(o.samples, 'samples'),
    failed: count(o.failed, 'failed'),
    dropped,
    agreementSum: count(o.agreementSum, 'agreementSum'),
    agreement: histogram(o.agreement, 'agreement'),
    matched: count(o.matched, 'matched'),
    confidenceShiftSum: finite(o.confidenceShiftSum, 'confidenceShiftSum'),
    classes,
    latencyPairs: count(o.latencyPairs, 'latencyPairs'),
    activeMs: histogram(o.activeMs, 'activeMs'),
    candidateMs: histogram(o.candidateMs, 'candidateMs'),
    activeMsSum: count(o.activeMsSum, 'activeMsSum'),
    candidateMsSum: count(o.candidateMsSum, 'candidateMsSum'),
  };
}
