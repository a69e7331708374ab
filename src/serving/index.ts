export { ModelManager, type LoadedVersion, type VersionState } from './models.js';
export { DetectService, type DetectInput, type DetectResult, type DetectSettings, type Timing } from './detect.js';
export { ModelLifecycle, type LifecycleOptions, type ModelChange, type ModelChangeType, type ModelStatusView, type UploadMeta } from './lifecycle.js';
export { StreamSession, type DropPolicy, type StreamItem, type StreamSettings, type StreamSink } from './stream.js';
