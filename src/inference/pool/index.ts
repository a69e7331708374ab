export { InferencePool, type PoolOptions, type PoolStats, type PoolEvent, type RunResult, type Ticket } from './pool.js';
export type { LoadOptions, ModelInfo, PixelSample, RunInput, RunOutput, RunTiming, ExecutionProvider } from './messages.js';
