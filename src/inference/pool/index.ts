export { InferencePool, type PoolOptions, type PoolStats, type PoolEvent, type RunResult, type Ticket } from './pool.js';
export type { LoadOptions, ModelInfo, RunInput, RunOutput, RunTiming, ExecutionProvider } from './messages.js';
