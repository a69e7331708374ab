export {
  ModelManager,
  isWarm,
  type Catalog,
  type LoadedVersion,
  type LoadSettings,
  type ModelFile,
  type VersionState,
} from './models.js';
export {
  DetectService,
  type DetectInput,
  type DetectOptions,
  type DetectResult,
  type DetectSettings,
  type Timing,
} from './detect.js';
export {
  DriftMonitor,
  PROFILE_KIND,
  type DriftMonitorDeps,
  type DriftSettings,
  type DriftView,
  type ProfileStore,
  type RemoteProfiles,
  type SampleObserver,
  type SampleTarget,
} from './drift.js';
export { calibrate, type CalibrationImage, type CalibrationResult } from './calibrate.js';
export {
  AccessControl,
  type AccessOptions,
  type CallInfo,
  type Capability,
  type Decision,
  type Requirement,
  type StaticToken,
  type TokenRole,
  type TokenSource,
} from './access.js';
export { ModelFollower, requiredVersions, type FollowerOptions, type ModelPointers } from './follower.js';
export { localRegistryPeer, type RegistryPeer } from './registry-peer.js';
export {
  ModelRegistry,
  type Caller,
  type ModelStatusView,
  type PromoteCheck,
  type PromoteOptions,
  type RegistryOptions,
  type UploadMeta,
} from './registry.js';
export { checkGates, parseGate, promotionGates, type Evidence } from './gates.js';
export { ShadowRunner } from './shadow.js';
export { TrialTallies } from './trial-tallies.js';
export type { CanaryTally, ShadowSummary, ShadowTally, TrialTally } from './trial-stats.js';
export type { CanaryView, ShadowView } from './trials.js';
export type { DatasetUploadItem } from './datasets.js';
export type { EvaluationReport } from './evaluation.js';
export { requestBucket } from './routing.js';
export {
  Fleet,
  type FleetOptions,
  type ReplicaModelReport,
  type ReplicaModelView,
  type ReplicaReport,
  type ReplicaVersion,
} from './fleet.js';
export {
  Rollouts,
  type Rollout,
  type RolloutAction,
  type RolloutOptions,
  type RolloutPhase,
  type RolloutReplica,
} from './rollout.js';
export type { DatasetRecord, EvaluationRecord, TokenDigest, TrialRecord } from '../registry/index.js';
export type { ModelChange, ModelChangeType, TrialRef } from './model-change.js';
export { TokenSync, type TokenSyncOptions } from './token-sync.js';
export { TensorService, type LoadedVersionView, type ModelDescription, type TensorResult } from './tensor.js';
export { StreamSession, type DropPolicy, type StreamItem, type StreamSettings, type StreamSink } from './stream.js';
