/**
 * The sliding window of recent requests and the drift report comparing it with a reference profile:
 * per feature PSI (on the reference's quantile bins) and KS, PSI and chi-square on the class mix, and a
 * verdict from documented thresholds. Pure: no timers, no metrics library.
 */
import { FEATURE_NAMES, type FeatureName, type FeatureSample } from './features.js';
import { assertFiniteSample, type ReferenceProfile } from './profile.js';
import { chiSquare, histogram, ksStatistic, psi, psiNoiseFloor, summary, type Summary } from './stats.js';

export type Verdict = 'stable' | 'warning' | 'drift' | 'insufficient_data';

/**
 * Verdict rule: PSI < psiWarning → stable; < psiDrift → warning; otherwise drift (0.1 / 0.25 by default,
 * the usual credit-scoring rule of thumb). A warning or drift stands only if the binned counts also differ
 * significantly (chi-square homogeneity p-value < alpha); otherwise the verdict is stable. The guard exists
 * because PSI between two samples of one distribution is about (bins − 1)·(1/nRef + 1/nCur) by chance
 * (reported as psiNoise): 0.04 for 500 vs 500 at 10 bins, but 0.28 for 64 vs 64 and 0.32 for the minimum
 * window of 30 against 500, so small windows would otherwise raise false drift. alpha = 1 turns it off.
 * Windows with fewer than minSamples requests give insufficient_data.
 */
export interface DriftThresholds {
  readonly psiWarning: number;
  readonly psiDrift: number;
  readonly minSamples: number;
  readonly alpha: number;
}

export const DEFAULT_THRESHOLDS: DriftThresholds = Object.freeze({
  psiWarning: 0.1,
  psiDrift: 0.25,
  minSamples: 30,
  alpha: 0.01,
});

export interface FeatureDrift {
  readonly feature: FeatureName;
  readonly reference: Summary;
  readonly current: Summary;
  /** null while the window is empty. */
  readonly psi: number | null;
  readonly ks: number | null;
  /** PSI expected from sampling noise alone at these sample sizes (see DriftThresholds). */
  readonly psiNoise: number | null;
  /** Chi-square homogeneity p-value of the reference vs window counts in the PSI bins. */
  readonly pValue: number | null;
  readonly verdict: Verdict;
}

export interface ClassMixDrift {
  /** Detections per class id in the reference and in the window. */
  readonly reference: Readonly<Record<string, number>>;
  readonly current: Readonly<Record<string, number>>;
  /** null when either side has no detections (then the verdict is insufficient_data). */
  readonly psi: number | null;
  readonly chiSquare: number | null;
  readonly dof: number | null;
  /** Optimistic: detections within one image are not independent (see stats.chiSquare). */
  readonly pValue: number | null;
  readonly verdict: Verdict;
}

export interface DriftReport {
  /** Requests in the window now, and its capacity. */
  readonly windowSize: number;
  readonly capacity: number;
  readonly referenceSize: number;
  readonly thresholds: DriftThresholds;
  readonly features: readonly FeatureDrift[];
  readonly classMix: ClassMixDrift;
  /** The worst verdict over features and class mix; insufficient_data only when nothing could be judged. */
  readonly verdict: Verdict;
}

const RANK: Record<Verdict, number> = { insufficient_data: 0, stable: 1, warning: 2, drift: 3 };

/** The verdict for a judged comparison (enough samples): PSI level, kept only if significant at alpha. */
export function verdictFor(
  psiValue: number,
  pValue: number,
  t: DriftThresholds,
): Exclude<Verdict, 'insufficient_data'> {
  if (psiValue < t.psiWarning || !(pValue < t.alpha)) return 'stable';
  return psiValue < t.psiDrift ? 'warning' : 'drift';
}

function resolveThresholds(partial: Partial<DriftThresholds>): DriftThresholds {
  const t = { ...DEFAULT_THRESHOLDS, ...partial };
  if (!(t.psiWarning > 0 && t.psiWarning <= t.psiDrift)) {
    throw new RangeError(`thresholds need 0 < psiWarning ≤ psiDrift, got ${t.psiWarning} / ${t.psiDrift}`);
  }
  if (!(t.alpha > 0 && t.alpha <= 1)) throw new RangeError(`alpha must be in (0, 1], got ${t.alpha}`);
  if (!Number.isInteger(t.minSamples) || t.minSamples < 1) {
    throw new RangeError(`minSamples must be a positive integer, got ${t.minSamples}`);
  }
  return t;
}

/** Fixed-capacity ring buffer of the most recent samples, stored as one Float64Array per feature. */
export class DriftWindow {
  private readonly columns: Record<FeatureName, Float64Array>;
  private readonly classes: (Readonly<Record<number, number>> | undefined)[];
  /** Running class totals over the window, updated on push and evict so report() need not rescan. */
  private readonly classTotals = new Map<number, number>();
  private next = 0;
  private count = 0;

  constructor(readonly capacity = 500) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
    this.columns = {} as Record<FeatureName, Float64Array>;
    for (const name of FEATURE_NAMES) this.columns[name] = new Float64Array(capacity);
    this.classes = new Array<Readonly<Record<number, number>> | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  push(sample: FeatureSample): void {
    assertFiniteSample(sample);
    const i = this.next;
    const evicted = this.classes[i];
    if (this.count === this.capacity && evicted) this.addClasses(evicted, -1);
    for (const name of FEATURE_NAMES) this.columns[name][i] = sample[name];
    const counts = { ...sample.classCounts }; // own copy: the caller may reuse its object
    this.classes[i] = counts;
    this.addClasses(counts, 1);
    this.next = (i + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  clear(): void {
    this.next = 0;
    this.count = 0;
    this.classes.fill(undefined);
    this.classTotals.clear();
  }

  /** The window's values of one feature (a copy; order is not meaningful). */
  values(name: FeatureName): Float64Array {
    return this.columns[name].slice(0, this.count);
  }

  /** Detections per class id in the window. */
  classCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of [...this.classTotals].sort((a, b) => a[0] - b[0])) if (v > 0) out[String(k)] = v;
    return out;
  }

  private addClasses(counts: Readonly<Record<number, number>>, sign: 1 | -1): void {
    for (const [k, v] of Object.entries(counts)) {
      const id = Number(k);
      const t = (this.classTotals.get(id) ?? 0) + sign * v;
      if (t === 0) this.classTotals.delete(id);
      else this.classTotals.set(id, t);
    }
  }

  report(profile: ReferenceProfile, thresholds: Partial<DriftThresholds> = {}): DriftReport {
    const t = resolveThresholds(thresholds);
    const enough = this.count >= t.minSamples;
    const features: FeatureDrift[] = FEATURE_NAMES.map((name) => {
      const ref = profile.features[name];
      const cur = this.values(name);
      if (cur.length === 0) {
        const empty = { psi: null, ks: null, psiNoise: null, pValue: null };
        return { feature: name, reference: ref.summary, current: summary(cur), ...empty, verdict: 'insufficient_data' };
      }
      const counts = histogram(cur, ref.edges);
      const p = psi(ref.counts, counts);
      const { pValue } = chiSquare(ref.counts, counts);
      return {
        feature: name,
        reference: ref.summary,
        current: summary(cur),
        psi: p,
        ks: ksStatistic(ref.sample, cur),
        psiNoise: psiNoiseFloor(ref.counts.length, profile.n, cur.length),
        pValue,
        verdict: enough ? verdictFor(p, pValue, t) : 'insufficient_data',
      };
    });
    const classMix = compareClassMix(profile.classMix, this.classCounts(), enough, t);
    let verdict: Verdict = 'insufficient_data';
    for (const v of [...features.map((f) => f.verdict), classMix.verdict]) if (RANK[v] > RANK[verdict]) verdict = v;
    return {
      windowSize: this.count,
      capacity: this.capacity,
      referenceSize: profile.n,
      thresholds: t,
      features,
      classMix,
      verdict,
    };
  }
}

function compareClassMix(
  reference: Readonly<Record<string, number>>,
  current: Readonly<Record<string, number>>,
  enough: boolean,
  t: DriftThresholds,
): ClassMixDrift {
  const ids = [...new Set([...Object.keys(reference), ...Object.keys(current)])].sort((a, b) => Number(a) - Number(b));
  const r = ids.map((id) => reference[id] ?? 0);
  const c = ids.map((id) => current[id] ?? 0);
  const has = (xs: number[]): boolean => xs.some((x) => x > 0);
  if (!has(r) || !has(c)) {
    return { reference, current, psi: null, chiSquare: null, dof: null, pValue: null, verdict: 'insufficient_data' };
  }
  const p = psi(r, c);
  const chi = chiSquare(r, c);
  return {
    reference,
    current,
    psi: p,
    chiSquare: chi.statistic,
    dof: chi.dof,
    pValue: chi.pValue,
    verdict: enough ? verdictFor(p, chi.pValue, t) : 'insufficient_data',
  };
}

const fmt = (v: number | null, digits = 3): string =>
  v === null || Number.isNaN(v) ? '-' : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(digits);

/** Plain-text table of a report: one line per feature, reference vs current mean [p05, p95], PSI, KS, verdict. */
export function formatReport(r: DriftReport): string {
  const rows = [
    ['feature', 'reference mean [p05, p95]', 'current mean [p05, p95]', 'psi', 'noise', 'ks', 'p', 'verdict'],
  ];
  const range = (s: Summary): string => `${fmt(s.mean)} [${fmt(s.p05)}, ${fmt(s.p95)}]`;
  for (const f of r.features) {
    const stats = [fmt(f.psi), fmt(f.psiNoise), fmt(f.ks), fmt(f.pValue, 4)];
    rows.push([f.feature, range(f.reference), range(f.current), ...stats, f.verdict]);
  }
  const cm = r.classMix;
  const chi = `chi2 ${fmt(cm.chiSquare, 1)} dof ${cm.dof ?? '-'}`;
  const dets = (rec: Readonly<Record<string, number>>): string => `${sumValues(rec)} detections`;
  rows.push(['classMix', dets(cm.reference), dets(cm.current), fmt(cm.psi), '-', chi, fmt(cm.pValue, 4), cm.verdict]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]))
      .join('  ')
      .trimEnd(),
  );
  const t = r.thresholds;
  return [
    `drift report: ${r.windowSize}/${r.capacity} requests vs reference of ${r.referenceSize}; ` +
      `psi warning ${t.psiWarning}, drift ${t.psiDrift}, alpha ${t.alpha}, min ${t.minSamples}; overall ${r.verdict}`,
    ...lines,
  ].join('\n');
}

function sumValues(rec: Readonly<Record<string, number>>): number {
  let s = 0;
  for (const v of Object.values(rec)) s += v;
  return s;
}
