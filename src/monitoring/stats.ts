/**
 * Pure statistics for drift detection: quantile binning, PSI, two-sample Kolmogorov-Smirnov, chi-square
 * homogeneity with its p-value, and sample summaries. No dependencies; inputs are never mutated.
 */

type Numbers = ArrayLike<number>;

/** Ascending copy as a Float64Array (typed-array sort is numeric, unlike Array#sort's default). */
export function sortedCopy(sample: Numbers): Float64Array {
  return Float64Array.from(sample).sort();
}

/** Quantile of an ascending sample, linear interpolation between order statistics (R type 7, NumPy default). */
export function quantileSorted(sorted: Numbers, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  // h = (n−1)·p; value s[⌊h⌋] + (h−⌊h⌋)·(s[⌊h⌋+1] − s[⌊h⌋])
  const h = (n - 1) * Math.min(1, Math.max(0, p));
  const lo = Math.floor(h);
  const hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}

/** The largest double below x: an edge that separates "exactly x" from everything smaller. */
function nextDown(x: number): number {
  if (x === 0) return -Number.MIN_VALUE;
  const f = new Float64Array([x]);
  const bits = new BigInt64Array(f.buffer);
  bits[0] += x > 0 ? -1n : 1n;
  return f[0];
}

/**
 * Interior bin edges at the reference's 1/bins … (bins−1)/bins quantiles, ascending and deduplicated.
 * Bins are right-closed: bin 0 = (−∞, e0], bin i = (e(i−1), e(i)], last = (e(last), +∞), so the outer bins
 * catch values beyond the reference range. Where quantiles collide (a point mass, e.g. a constant width of
 * 640, or 40% of requests with 0 detections) an extra edge just below the value gives the point mass a bin
 * of its own: a constant feature v gets (−∞, v), [v], (v, +∞) and so still notices a move either way.
 */
export function quantileEdges(sample: Numbers, bins = 10): number[] {
  if (!Number.isInteger(bins) || bins < 1) throw new RangeError(`bins must be a positive integer, got ${bins}`);
  if (sample.length === 0) return [];
  const sorted = sortedCopy(sample);
  const edges: number[] = [];
  const pointMasses = new Set<number>();
  for (let i = 1; i < bins; i++) {
    const q = quantileSorted(sorted, i / bins);
    if (edges.length && q <= edges[edges.length - 1]) pointMasses.add(edges[edges.length - 1]);
    else edges.push(q);
  }
  const out: number[] = [];
  for (const e of edges) {
    if (pointMasses.has(e)) {
      const below = nextDown(e);
      if (!out.length || below > out[out.length - 1]) out.push(below);
    }
    out.push(e);
  }
  return out;
}

/** Index of the right-closed bin holding x: the number of edges strictly below x (binary search). */
export function binIndex(edges: Numbers, x: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (edges[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Counts per bin for the edges from quantileEdges: edges.length + 1 bins. */
export function histogram(sample: Numbers, edges: Numbers): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < sample.length; i++) counts[binIndex(edges, sample[i])]++;
  return counts;
}

function total(counts: Numbers, name: string): number {
  let t = 0;
  for (let i = 0; i < counts.length; i++) {
    if (!(counts[i] >= 0)) throw new RangeError(`${name}[${i}] must be a non-negative count, got ${counts[i]}`);
    t += counts[i];
  }
  if (t <= 0) throw new RangeError(`${name} is empty`);
  return t;
}

/**
 * Population Stability Index over matching bins: PSI = Σ (c_i − r_i)·ln(c_i / r_i), with r_i, c_i the
 * reference and current proportions, each floored at epsilon so an empty bin costs a large finite amount
 * instead of infinity. 0 for identical proportions; symmetric in its arguments.
 */
export function psi(refCounts: Numbers, curCounts: Numbers, epsilon = 1e-4): number {
  if (refCounts.length !== curCounts.length) {
    throw new RangeError(`psi: ${refCounts.length} reference bins vs ${curCounts.length} current bins`);
  }
  const rt = total(refCounts, 'refCounts');
  const ct = total(curCounts, 'curCounts');
  let s = 0;
  for (let i = 0; i < refCounts.length; i++) {
    const r = Math.max(refCounts[i] / rt, epsilon);
    const c = Math.max(curCounts[i] / ct, epsilon);
    s += (c - r) * Math.log(c / r);
  }
  return s;
}

/**
 * Expected PSI between two samples drawn from the same distribution, ≈ (bins − 1)·(1/nRef + 1/nCur)
 * (PSI is a symmetrised KL divergence, whose sampling bias is that of a chi-square with bins − 1 dof).
 * Below this, a PSI says nothing; with 10 bins and 64 vs 64 samples it is already 0.28.
 */
export function psiNoiseFloor(bins: number, nRef: number, nCur: number): number {
  return (bins - 1) * (1 / nRef + 1 / nCur);
}

/**
 * Two-sample Kolmogorov-Smirnov statistic D = sup_x |F_ref(x) − F_cur(x)| over the empirical CDFs, from a
 * merge walk that steps past ties in both samples before comparing. 0 for identical samples, 1 for disjoint.
 */
export function ksStatistic(refSortedSample: Numbers, curSample: Numbers): number {
  const a = refSortedSample;
  const n = a.length;
  const m = curSample.length;
  if (n === 0 || m === 0) throw new RangeError('ksStatistic needs two non-empty samples');
  for (let i = 1; i < n; i++) {
    if (!(a[i - 1] <= a[i])) throw new RangeError('ksStatistic: the reference sample must be sorted ascending');
  }
  const b = sortedCopy(curSample);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const x = a[i] < b[j] ? a[i] : b[j];
    while (i < n && a[i] <= x) i++;
    while (j < m && b[j] <= x) j++;
    const diff = Math.abs(i / n - j / m);
    if (diff > d) d = diff;
  }
  // Once one sample is exhausted its CDF is 1 and the other only climbs towards it: the max is already seen.
  return d;
}

/** Below this, lnGamma shifts z up by the recurrence so the Stirling series converges to double precision. */
const STIRLING_MIN = 15;

/**
 * ln Γ(z) for z > 0: Stirling's series (z − ½)·ln z − z + ½·ln 2π + Σ B₂ₖ / (2k(2k−1)·z^(2k−1)), k = 1..6,
 * after the recurrence Γ(z) = Γ(z + n) / (z·(z+1)·…·(z+n−1)) lifts z to ≥ 15 (absolute error ~1e-14).
 * Reflection Γ(z)·Γ(1 − z) = π / sin(πz) below ½.
 */
export function lnGamma(z: number): number {
  if (z < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * z))) - lnGamma(1 - z);
  let prod = 1;
  while (z < STIRLING_MIN) {
    prod *= z;
    z += 1;
  }
  const z2 = z * z;
  // 1/12z − 1/360z³ + 1/1260z⁵ − 1/1680z⁷ + 1/1188z⁹ − 691/360360z¹¹, in Horner form.
  const series =
    (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - (1 / 1188 - 691 / 360360 / z2) / z2) / z2) / z2) / z2) / z;
  return (z - 0.5) * Math.log(z) - z + 0.5 * Math.log(2 * Math.PI) + series - Math.log(prod);
}

const GAMMA_EPS = 1e-15;
const GAMMA_TINY = 1e-300;
const GAMMA_MAX_ITER = 1000;

/**
 * Regularized upper incomplete gamma Q(a, x) = Γ(a, x)/Γ(a) (Numerical Recipes gammq): the series for
 * P = 1 − Q when x < a + 1, where it converges fast, else the continued fraction for Q (modified Lentz).
 */
export function gammaQ(a: number, x: number): number {
  if (!(a > 0) || !(x >= 0)) throw new RangeError(`gammaQ needs a > 0 and x ≥ 0, got a=${a}, x=${x}`);
  if (x === 0) return 1;
  if (x === Number.POSITIVE_INFINITY) return 0;
  const prefix = Math.exp(-x + a * Math.log(x) - lnGamma(a)); // e^(−x)·x^a / Γ(a)
  if (x < a + 1) {
    // P(a, x) = e^(−x)·x^a/Γ(a) · Σ_n x^n / (a·(a+1)·…·(a+n))
    let ap = a;
    let del = 1 / a;
    let sum = del;
    for (let n = 0; n < GAMMA_MAX_ITER; n++) {
      ap += 1;
      del *= x / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * GAMMA_EPS) break;
    }
    return Math.min(1, Math.max(0, 1 - sum * prefix));
  }
  // Q(a, x) = e^(−x)·x^a/Γ(a) · 1/(x+1−a− 1·(1−a)/(x+3−a− 2·(2−a)/(x+5−a− …)))
  let b = x + 1 - a;
  let c = 1 / GAMMA_TINY;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i <= GAMMA_MAX_ITER; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < GAMMA_TINY) d = GAMMA_TINY;
    c = b + an / c;
    if (Math.abs(c) < GAMMA_TINY) c = GAMMA_TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < GAMMA_EPS) break;
  }
  return Math.min(1, Math.max(0, prefix * h));
}

/** Upper tail of the chi-square distribution: P(X ≥ x) = Q(dof/2, x/2). */
export function chiSquarePValue(statistic: number, dof: number): number {
  return dof > 0 ? gammaQ(dof / 2, Math.max(0, statistic) / 2) : 1;
}

export interface ChiSquareResult {
  readonly statistic: number;
  readonly dof: number;
  readonly pValue: number;
}

/**
 * Chi-square test of homogeneity on the 2×k table [ref; cur] (both are samples, so neither is treated as the
 * exact expectation): X² = Σ (O − E)²/E with E = rowTotal·colTotal/N, dof = k' − 1 over the k' categories
 * seen in either. Categories empty in both are dropped. Assumes independent observations; for detections,
 * which cluster within an image, the p-value is optimistic (too small).
 */
export function chiSquare(refCounts: Numbers, curCounts: Numbers): ChiSquareResult {
  if (refCounts.length !== curCounts.length) {
    throw new RangeError(`chiSquare: ${refCounts.length} reference categories vs ${curCounts.length} current`);
  }
  const rt = total(refCounts, 'refCounts');
  const ct = total(curCounts, 'curCounts');
  const n = rt + ct;
  let statistic = 0;
  let used = 0;
  for (let i = 0; i < refCounts.length; i++) {
    const col = refCounts[i] + curCounts[i];
    if (col === 0) continue;
    used++;
    const er = (rt * col) / n;
    const ec = (ct * col) / n;
    statistic += (refCounts[i] - er) ** 2 / er + (curCounts[i] - ec) ** 2 / ec;
  }
  const dof = Math.max(0, used - 1);
  return { statistic, dof, pValue: chiSquarePValue(statistic, dof) };
}

export interface Summary {
  readonly n: number;
  readonly mean: number;
  /** Population standard deviation (divides by n): a description of the sample, not an estimate. */
  readonly std: number;
  readonly p05: number;
  readonly p50: number;
  readonly p95: number;
  readonly min: number;
  readonly max: number;
}

/** n, mean, std, quantiles (type 7) and range; every value but n is NaN for an empty sample. */
export function summary(sample: Numbers): Summary {
  return summarySorted(sortedCopy(sample));
}

/** summary() of a sample already sorted ascending (skips the copy and sort). */
export function summarySorted(sorted: Numbers): Summary {
  const n = sorted.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  const mean = n ? sum / n : Number.NaN;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (sorted[i] - mean) ** 2; // two-pass: no cancellation from E[x²] − E[x]²
  return {
    n,
    mean,
    std: n ? Math.sqrt(ss / n) : Number.NaN,
    p05: quantileSorted(sorted, 0.05),
    p50: quantileSorted(sorted, 0.5),
    p95: quantileSorted(sorted, 0.95),
    min: n ? sorted[0] : Number.NaN,
    max: n ? sorted[n - 1] : Number.NaN,
  };
}
