/**
 * Single-request anomalies: a request whose feature lies far outside what the reference ever showed
 * (a black frame, a 20000-pixel-wide panorama, 300 detections). Pure.
 */
import { FEATURE_NAMES, type FeatureName, type FeatureSample } from './features.js';
import type { ReferenceProfile } from './profile.js';

export interface AnomalyOptions {
  /** IQR multiplier (Tukey's fences use 1.5; 3 is "far out"). Default 1.5. */
  readonly k?: number;
  /** Features to check; default all of FEATURE_NAMES. */
  readonly features?: readonly FeatureName[];
}

export interface AnomalyBounds {
  readonly low: number;
  readonly high: number;
}

/**
 * Allowed range per feature: [p01 − k·IQR, p99 + k·IQR] with IQR = p75 − p25 of the reference. Fences on
 * p01/p99 rather than the quartiles, so the 2% tails of normal traffic do not fire on every request.
 * A constant reference feature (IQR 0) allows exactly its value.
 */
export function anomalyBounds(profile: ReferenceProfile, k = 1.5): Record<FeatureName, AnomalyBounds> {
  if (!(k >= 0)) throw new RangeError(`k must be ≥ 0, got ${k}`);
  const out = {} as Record<FeatureName, AnomalyBounds>;
  for (const name of FEATURE_NAMES) {
    const f = profile.features[name];
    const iqr = f.p75 - f.p25;
    out[name] = { low: f.p01 - k * iqr, high: f.p99 + k * iqr };
  }
  return out;
}

/** Names of the features on which this request falls outside anomalyBounds; empty when it looks normal. */
export function anomalies(sample: FeatureSample, profile: ReferenceProfile, opts: AnomalyOptions = {}): FeatureName[] {
  const bounds = anomalyBounds(profile, opts.k ?? 1.5);
  const out: FeatureName[] = [];
  for (const name of opts.features ?? FEATURE_NAMES) {
    const v = sample[name];
    // Written so NaN counts as anomalous.
    if (!(v >= bounds[name].low && v <= bounds[name].high)) out.push(name);
  }
  return out;
}
