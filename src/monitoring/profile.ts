/**
 * Reference profiles: what "normal" looks like for one model version, built from a calibration image set
 * or from the first N requests after promotion. Plain JSON, so it can be stored next to the model version
 * and reloaded (parseProfile checks a loaded one). Pure: the caller supplies the samples and the time.
 */
import { SightlineError } from '../errors.js';
import { FEATURE_NAMES, type FeatureName, type FeatureSample } from './features.js';
import { histogram, quantileEdges, quantileSorted, sortedCopy, summarySorted, type Summary } from './stats.js';

export type ProfileSource = 'calibration' | 'traffic';

/** One scalar feature of the reference. */
export interface FeatureProfile {
  /** Ascending, at most sampleCap values: evenly spaced order statistics of the full sample (for KS). */
  readonly sample: number[];
  /** Interior bin edges (quantileEdges of the full sample) and the full sample's counts in those bins. */
  readonly edges: number[];
  readonly counts: number[];
  readonly summary: Summary;
  /** Quantiles of the full sample for the anomaly range [p01 − k·IQR, p99 + k·IQR], IQR = p75 − p25. */
  readonly p01: number;
  readonly p25: number;
  readonly p75: number;
  readonly p99: number;
}

export interface ReferenceProfile {
  /** Format version of this JSON; parseProfile refuses others. */
  readonly version: 1;
  readonly source: ProfileSource;
  /** ISO 8601. */
  readonly createdAt: string;
  /** The model version this profile describes, when the caller says. */
  readonly modelVersion?: string;
  /** Number of requests (images) in the reference. */
  readonly n: number;
  /** Requested bins per feature (a feature may have fewer after deduplicating edges). */
  readonly bins: number;
  readonly features: Readonly<Record<FeatureName, FeatureProfile>>;
  /** Detections per class id (decimal string keys, as JSON has them) over the whole reference. */
  readonly classMix: Readonly<Record<string, number>>;
}

export interface ProfileOptions {
  /** Quantile bins per feature, default 10. Fewer bins lower PSI's noise floor on small samples. */
  readonly bins?: number;
  /** Values kept per feature for KS, default 2000. */
  readonly sampleCap?: number;
  /** Defaults to now. */
  readonly createdAt?: Date;
  readonly modelVersion?: string;
}

/** Throws unless every scalar feature of the sample is a finite number (NaN would corrupt sorts and bins). */
export function assertFiniteSample(s: FeatureSample): void {
  for (const name of FEATURE_NAMES) {
    if (!Number.isFinite(s[name])) throw new RangeError(`feature ${name} is not a finite number: ${s[name]}`);
  }
}

/** cap evenly spaced order statistics (min and max included) of an ascending array. */
function evenlySubsample(sorted: Float64Array, cap: number): number[] {
  const n = sorted.length;
  if (n <= cap) return Array.from(sorted);
  const out = new Array<number>(cap);
  for (let i = 0; i < cap; i++) out[i] = sorted[Math.round((i * (n - 1)) / (cap - 1))];
  return out;
}

function featureProfile(values: ArrayLike<number>, bins: number, cap: number): FeatureProfile {
  const sorted = sortedCopy(values);
  const edges = quantileEdges(sorted, bins);
  return {
    sample: evenlySubsample(sorted, cap),
    edges,
    counts: histogram(sorted, edges),
    summary: summarySorted(sorted),
    p01: quantileSorted(sorted, 0.01),
    p25: quantileSorted(sorted, 0.25),
    p75: quantileSorted(sorted, 0.75),
    p99: quantileSorted(sorted, 0.99),
  };
}

function addClassCounts(into: Map<number, number>, counts: Readonly<Record<number, number>>): void {
  for (const [k, v] of Object.entries(counts)) into.set(Number(k), (into.get(Number(k)) ?? 0) + v);
}

function fromColumns(
  columns: Readonly<Record<FeatureName, ArrayLike<number>>>,
  n: number,
  classMix: Map<number, number>,
  source: ProfileSource,
  opts: ProfileOptions,
): ReferenceProfile {
  const bins = opts.bins ?? 10;
  const cap = opts.sampleCap ?? 2000;
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  if (!Number.isInteger(cap) || cap < 2) throw new RangeError(`sampleCap must be an integer ≥ 2, got ${cap}`);
  if (n === 0) throw new RangeError('a reference profile needs at least one sample');
  const features = {} as Record<FeatureName, FeatureProfile>;
  for (const name of FEATURE_NAMES) features[name] = featureProfile(columns[name], bins, cap);
  const mix: Record<string, number> = {};
  for (const [k, v] of [...classMix].sort((a, b) => a[0] - b[0])) mix[String(k)] = v;
  return {
    version: 1,
    source,
    createdAt: (opts.createdAt ?? new Date()).toISOString(),
    ...(opts.modelVersion !== undefined ? { modelVersion: opts.modelVersion } : {}),
    n,
    bins,
    features,
    classMix: mix,
  };
}

/** A reference profile from a complete set of samples (a calibration set, or collected traffic). */
export function buildProfile(
  samples: readonly FeatureSample[],
  source: ProfileSource,
  opts: ProfileOptions = {},
): ReferenceProfile {
  const columns = {} as Record<FeatureName, Float64Array>;
  for (const name of FEATURE_NAMES) columns[name] = new Float64Array(samples.length);
  const mix = new Map<number, number>();
  samples.forEach((s, i) => {
    assertFiniteSample(s);
    for (const name of FEATURE_NAMES) columns[name][i] = s[name];
    addClassCounts(mix, s.classCounts);
  });
  return fromColumns(columns, samples.length, mix, source, opts);
}

/**
 * Collects the first `target` samples (e.g. the first N requests after a promotion) into typed columns and
 * produces the profile once: add() returns it on the sample that completes the set and ignores later ones.
 */
export class ProfileBuilder {
  private readonly columns: Record<FeatureName, Float64Array>;
  private readonly mix = new Map<number, number>();
  private n = 0;
  private built: ReferenceProfile | undefined;

  constructor(
    readonly target: number,
    readonly source: ProfileSource = 'traffic',
    private readonly opts: Omit<ProfileOptions, 'createdAt'> & { readonly now?: () => Date } = {},
  ) {
    if (!Number.isInteger(target) || target < 1)
      throw new RangeError(`target must be a positive integer, got ${target}`);
    this.columns = {} as Record<FeatureName, Float64Array>;
    for (const name of FEATURE_NAMES) this.columns[name] = new Float64Array(target);
  }

  get count(): number {
    return this.n;
  }

  get complete(): boolean {
    return this.n >= this.target;
  }

  /** Adds one sample; returns the profile exactly once, when this sample completes the set. */
  add(sample: FeatureSample): ReferenceProfile | undefined {
    if (this.complete) return undefined;
    assertFiniteSample(sample);
    for (const name of FEATURE_NAMES) this.columns[name][this.n] = sample[name];
    addClassCounts(this.mix, sample.classCounts);
    this.n++;
    return this.complete ? this.build() : undefined;
  }

  /** The profile of what has been collected so far (needs at least one sample); cached once complete. */
  build(): ReferenceProfile {
    if (this.built) return this.built;
    const cols = {} as Record<FeatureName, Float64Array>;
    for (const name of FEATURE_NAMES) cols[name] = this.columns[name].subarray(0, this.n);
    const { now, ...opts } = this.opts;
    const p = fromColumns(cols, this.n, this.mix, this.source, { ...opts, createdAt: now ? now() : new Date() });
    if (this.complete) this.built = p;
    return p;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNumberArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');
const SUMMARY_KEYS = ['n', 'mean', 'std', 'p05', 'p50', 'p95', 'min', 'max'] as const;

/**
 * Checks a profile read back from JSON (a file, a registry column): shape, version, every feature present,
 * counts matching edges, sample sorted. Throws INVALID_INPUT naming the first problem.
 */
export function parseProfile(value: unknown): ReferenceProfile {
  const bad = (why: string): never => {
    throw new SightlineError('INVALID_INPUT', `invalid reference profile: ${why}`);
  };
  if (!isObject(value)) return bad('not an object');
  if (value.version !== 1) bad(`unsupported version ${String(value.version)}`);
  if (value.source !== 'calibration' && value.source !== 'traffic') bad('source must be calibration or traffic');
  if (typeof value.createdAt !== 'string') bad('createdAt must be a string');
  if (value.modelVersion !== undefined && typeof value.modelVersion !== 'string') bad('modelVersion must be a string');
  if (typeof value.n !== 'number' || !Number.isInteger(value.n) || value.n < 1) bad('n must be a positive integer');
  if (typeof value.bins !== 'number' || !Number.isInteger(value.bins) || value.bins < 1)
    bad('bins must be a positive integer');
  const features = value.features;
  if (!isObject(features)) return bad('features missing');
  for (const name of FEATURE_NAMES) {
    const f = features[name];
    if (!isObject(f)) return bad(`feature ${name} missing`);
    if (!isNumberArray(f.sample) || f.sample.length === 0) bad(`${name}.sample must be a non-empty number array`);
    if (!isNumberArray(f.edges) || !isNumberArray(f.counts)) bad(`${name}.edges and counts must be number arrays`);
    const sample = f.sample as number[];
    if (sample.some((x, i) => i > 0 && sample[i - 1] > x)) bad(`${name}.sample is not sorted`);
    if ((f.counts as number[]).length !== (f.edges as number[]).length + 1)
      bad(`${name}.counts must have edges + 1 bins`);
    if (
      !isObject(f.summary) ||
      SUMMARY_KEYS.some((k) => typeof (f.summary as Record<string, unknown>)[k] !== 'number')
    ) {
      bad(`${name}.summary incomplete`);
    }
    for (const k of ['p01', 'p25', 'p75', 'p99'] as const) if (typeof f[k] !== 'number') bad(`${name}.${k} missing`);
  }
  const mix = value.classMix;
  if (!isObject(mix) || Object.values(mix).some((v) => typeof v !== 'number' || v < 0)) {
    bad('classMix must map class ids to counts');
  }
  return value as unknown as ReferenceProfile;
}
