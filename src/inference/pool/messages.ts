/**
 * The protocol between the pool (main thread) and its inference workers: discriminated unions with a
 * request id. Byte payloads travel in the transfer list, so they move instead of being copied.
 */
import type { ThreadPriority } from '../worker/priority.js';
import type { SerializedError } from '../../errors.js';
import type {
  DecodeOptions,
  Detection,
  FamilyName,
  LetterboxGeometry,
  LetterboxSpec,
  NmsOptions,
  TensorInfo,
} from '../types.js';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface LoadOptions {
  /** Forces the family instead of detecting it. */
  family?: FamilyName;
  /** Labels file contents; wins over the model's metadata names. */
  labelsText?: string;
  intraOpThreads: number;
  executionProviders: readonly ExecutionProvider[];
  warmupRuns: number;
  /**
   * ONNX Runtime's CPU memory arena. Off by default: with it, memory freed by unloaded versions stayed
   * in the process (RSS kept growing over hot swaps) and it bought no measurable speed here.
   */
  cpuMemArena: boolean;
}

/** What a worker learned about a model when loading it. Identical on every worker. */
export interface ModelInfo {
  family: FamilyName;
  inputName: string;
  inputWidth: number;
  inputHeight: number;
  letterbox: LetterboxSpec;
  outputs: TensorInfo[];
  numClasses: number;
  names: string[];
  props: Record<string, string>;
  /** The execution provider the session really got (after any fallback). */
  provider: ExecutionProvider;
  loadMs: number;
  warmupMs: number;
}

export interface RunInput {
  /** Letterboxed HWC RGB uint8 pixels at the model's input size. */
  pixels: Uint8Array;
  geometry: LetterboxGeometry;
  decode: DecodeOptions;
  nms: NmsOptions;
}

export interface RunTiming {
  /** Tensor conversion + session.run. */
  inferenceMs: number;
  /** Decode + NMS + mapping to source pixels. */
  postprocessMs: number;
}

export interface RunOutput {
  detections: Detection[];
  timing: RunTiming;
}

export type ToWorker =
  | { type: 'load'; id: number; key: string; model: Uint8Array; options: LoadOptions }
  | { type: 'warm'; id: number; key: string; runs: number }
  | { type: 'run'; id: number; key: string; input: RunInput }
  | { type: 'unload'; id: number; key: string };

/** What the reply to each request carries. */
export interface WorkerReplies {
  load: ModelInfo;
  /** Warm-up time in milliseconds. */
  warm: number;
  run: RunOutput;
  unload: null;
}

export type RequestType = ToWorker['type'];

export type FromWorker =
  | { type: 'ready'; priority: ThreadPriority }
  | { [K in RequestType]: { type: 'result'; id: number; ok: true; value: WorkerReplies[K] } }[RequestType]
  | { type: 'result'; id: number; ok: false; error: SerializedError };
