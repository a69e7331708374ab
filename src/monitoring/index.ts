/** Data-drift and anomaly monitoring: per-request features, reference profiles, drift reports. Pure. */
export {
  FEATURE_NAMES,
  featureSample,
  inputFeatures,
  outputFeatures,
  type FeatureName,
  type FeatureSample,
  type FeatureValues,
  type InputFeatureOptions,
  type InputFeatures,
  type OutputFeatures,
  type Region,
} from './features.js';
export {
  chiSquare,
  chiSquarePValue,
  gammaQ,
  histogram,
  ksStatistic,
  lnGamma,
  psi,
  psiNoiseFloor,
  quantileEdges,
  quantileSorted,
  summary,
  type ChiSquareResult,
  type Summary,
} from './stats.js';
export {
  ProfileBuilder,
  buildProfile,
  parseProfile,
  type FeatureProfile,
  type ProfileOptions,
  type ProfileSource,
  type ReferenceProfile,
} from './profile.js';
export {
  DEFAULT_THRESHOLDS,
  DriftWindow,
  formatReport,
  verdictFor,
  type ClassMixDrift,
  type DriftReport,
  type DriftThresholds,
  type FeatureDrift,
  type Verdict,
} from './window.js';
export { anomalies, anomalyBounds, type AnomalyBounds, type AnomalyOptions } from './anomaly.js';
