export { ModelManager, type LoadedVersion, type VersionState } from './models.js';
export { DetectService, type DetectInput, type DetectResult, type DetectSettings, type Timing } from './detect.js';
export { loadModelFile, type ModelFileSource } from './load-file.js';
export { StreamSession, type DropPolicy, type StreamItem, type StreamSettings, type StreamSink } from './stream.js';
