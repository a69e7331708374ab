export { ModelManager, type LoadedVersion, type VersionState } from './models.js';
export { DetectService, type DetectInput, type DetectOptions, type DetectResult, type DetectSettings, type Timing } from './detect.js';
export { DriftMonitor, PROFILE_KIND, type DriftSettings, type DriftView, type ProfileStore, type SampleObserver, type SampleTarget } from './drift.js';
export { calibrate, type CalibrationImage, type CalibrationResult } from './calibrate.js';
export { AccessControl, type AccessOptions, type CallInfo, type Capability, type Decision, type Role, type StaticToken, type TokenSource } from './access.js';
export { RegistryFollower, type FollowerOptions, type RegistryPeer } from './follower.js';
export type { TokenDigest } from '../registry/index.js';
export { ModelLifecycle, type LifecycleOptions, type ModelChange, type ModelChangeType, type ModelStatusView, type UploadMeta } from './lifecycle.js';
export { StreamSession, type DropPolicy, type StreamItem, type StreamSettings, type StreamSink } from './stream.js';
