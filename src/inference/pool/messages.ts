/**
 * The protocol between the pool (main thread) and its inference workers: discriminated unions with a
 * request id. Byte payloads travel in the transfer list, so they move instead of being copied.
 */
import type { ThreadPriority } from '../worker/priority.js';
import type { SerializedError } from '../../errors.js';
import type { ImageSource } from '../preprocess/source.js';
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
  /**
   * > intraOpThreads: also create a session with this many intra-op threads, for a request that finds
   * the pool idle (InferencePool gives it to one worker only). 0 or absent: none.
   */
  latencyThreads?: number;
  executionProviders: readonly ExecutionProvider[];
  warmupRuns: number;
  /** ONNX Runtime's CPU memory arena (config pool.cpuMemArena: why it is on by default). */
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
  /** The image: a JPEG the worker decodes, or pixels already decoded (preprocess/decode.ts). */
  source: ImageSource;
  /** Where the displayed image lands in the model input. */
  geometry: LetterboxGeometry;
  decode: DecodeOptions;
  nms: NmsOptions;
  /** > 0: also return every n-th pixel of the letterboxed image (drift monitoring's input features). */
  sampleStep?: number;
  /** Run on the latency session when this worker has one (set by the pool, never by callers). */
  wide?: boolean;
}

export interface RunTiming {
  /** libjpeg-turbo's decode in the worker (0 when the pixels arrived decoded). */
  decodeMs: number;
  /** Orientation, resize, padding and normalisation into the input tensor. */
  preprocessMs: number;
  /** session.run. */
  inferenceMs: number;
  /** Output decoding + NMS + mapping to source pixels. */
  postprocessMs: number;
}

/** RGB pixels of the letterboxed image's sampling grid (RunInput.sampleStep). */
export interface PixelSample {
  pixels: Uint8Array;
  width: number;
  height: number;
}

export interface RunOutput {
  detections: Detection[];
  timing: RunTiming;
  /** The request ran on the latency session (it found the pool idle). */
  latencySession: boolean;
  sample?: PixelSample;
}

/** A model's own input tensor, preprocessed by the caller (the raw-tensor path: no decode, no NMS). */
export interface TensorInput {
  /** Row-major FP32 elements of the model's input. */
  data: Float32Array;
  /** Its shape; must be the model's input shape (NCHW, batch 1). */
  dims: number[];
}

/** One raw output tensor of the model. */
export interface TensorOutput {
  name: string;
  dims: number[];
  data: Float32Array;
}

export interface TensorRunOutput {
  outputs: TensorOutput[];
  /** session.run only. */
  inferenceMs: number;
}

export type ToWorker =
  | { type: 'load'; id: number; key: string; model: Uint8Array; options: LoadOptions }
  | { type: 'warm'; id: number; key: string; runs: number }
  | { type: 'run'; id: number; key: string; input: RunInput }
  | { type: 'infer'; id: number; key: string; input: TensorInput }
  | { type: 'unload'; id: number; key: string };

/** What the reply to each request carries. */
export interface WorkerReplies {
  load: ModelInfo;
  /** Warm-up time in milliseconds. */
  warm: number;
  run: RunOutput;
  infer: TensorRunOutput;
  unload: null;
}

export type RequestType = ToWorker['type'];

export type FromWorker =
  | { type: 'ready'; priority: ThreadPriority }
  | { [K in RequestType]: { type: 'result'; id: number; ok: true; value: WorkerReplies[K] } }[RequestType]
  | { type: 'result'; id: number; ok: false; error: SerializedError };
