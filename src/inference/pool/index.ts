export {
  InferencePool,
  type PoolOptions,
  type PoolStats,
  type PoolEvent,
  type RunResult,
  type TensorRunResult,
  type Ticket,
  type BackgroundDrop,
} from './pool.js';
export type {
  LoadOptions,
  ModelInfo,
  PixelSample,
  RunInput,
  RunOutput,
  RunTiming,
  ExecutionProvider,
  TensorInput,
  TensorOutput,
} from './messages.js';
