/**
 * The Open Inference Protocol's operations on Sightline's models, independent of the wire: both the
 * gRPC service and the HTTP routes translate their messages to these calls and back.
 *
 * Two signatures per model: images (one BYTES input IMAGE, each element an encoded image, detected
 * through DetectService exactly like a Detect call) and tensors (the model's own FP32 input in, its raw
 * FP32 outputs out, through TensorService).
 */
import { SightlineError } from '../../errors.js';
import type { DetectResult, DetectService, ModelDescription, TensorService } from '../../serving/index.js';
import { parseVersion } from '../version.js';
import { checkElementCount, type InputTensor, type OutputTensor, type Params, type ParamValue } from './tensors.js';

export const IMAGE_INPUT = 'IMAGE';
/** The platform name OIP clients see (Triton's name for ONNX Runtime models). */
const PLATFORM = 'onnxruntime_onnx';

export interface OipLimits {
  /** Most images (elements of IMAGE) in one request. */
  maxImagesPerRequest: number;
  /** Images of one request decoded or inferred at once. */
  maxImagesInFlight: number;
}

export interface InferRequest {
  model: string;
  /** Empty: the active version. */
  version: string;
  id: string;
  parameters: Params;
  inputs: InputTensor[];
  /** Requested outputs (all of the signature's when empty). */
  outputs: { name: string }[];
}

export interface InferResponse {
  model: string;
  /** The registry's version number that answered (the wire carries it as text). */
  version: number;
  id: string;
  outputs: OutputTensor[];
  /** Per-image results of the image signature (for telemetry); empty for the tensor signature. */
  images: DetectResult[];
}

interface TensorMetadata {
  name: string;
  datatype: string;
  shape: number[];
}

export interface ModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorMetadata[];
  outputs: TensorMetadata[];
}

/** The image signature's outputs, in the order they are answered. */
const DETECTION_METADATA: readonly TensorMetadata[] = [
  { name: 'BOXES', datatype: 'FP32', shape: [-1, -1, 4] },
  { name: 'SCORES', datatype: 'FP32', shape: [-1, -1] },
  { name: 'CLASSES', datatype: 'INT32', shape: [-1, -1] },
  { name: 'LABELS', datatype: 'BYTES', shape: [-1, -1] },
  { name: 'COUNTS', datatype: 'INT32', shape: [-1] },
];

function numberParam(name: string, v: ParamValue | undefined): number {
  if (v === undefined) return 0;
  const n = typeof v === 'string' ? Number(v) : typeof v === 'boolean' ? NaN : Number(v);
  if (typeof v === 'string' && v.trim() === '') return 0;
  if (!Number.isFinite(n))
    throw new SightlineError('INVALID_INPUT', `parameter ${name} must be a number; got ${JSON.stringify(String(v))}`, {
      field: name,
    });
  return n;
}

function classesParam(v: ParamValue | undefined): number[] {
  if (v === undefined || v === '') return [];
  const parts = typeof v === 'string' ? v.split(',') : [String(v)];
  return parts.map((p) => {
    const n = Number(p.trim());
    if (typeof v === 'boolean' || !Number.isInteger(n) || n < 0)
      throw new SightlineError(
        'INVALID_INPUT',
        `parameter classes must be class ids separated by commas, like "0,5"; got ${JSON.stringify(String(v))}`,
        { field: 'classes' },
      );
    return n;
  });
}

function boolParam(name: string, v: ParamValue | undefined): boolean {
  if (v === undefined) return false;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1' || v === 1 || v === 1n) return true;
  if (v === 'false' || v === '0' || v === 0 || v === 0n) return false;
  throw new SightlineError('INVALID_INPUT', `parameter ${name} must be a boolean; got ${JSON.stringify(String(v))}`, {
    field: name,
  });
}

/** The thresholds and filters of the image signature, from the request's parameters (unknown ones are ignored). */
export function detectParams(p: Params): {
  confidenceThreshold: number;
  iouThreshold: number;
  maxDetections: number;
  classes: number[];
  agnosticNms: boolean;
} {
  const maxDetections = numberParam('max_detections', p.max_detections);
  if (!Number.isInteger(maxDetections) || maxDetections < 0)
    throw new SightlineError(
      'INVALID_INPUT',
      `parameter max_detections must be a non-negative integer; got ${String(p.max_detections)}`,
      { field: 'max_detections' },
    );
  return {
    confidenceThreshold: numberParam('confidence_threshold', p.confidence_threshold),
    iouThreshold: numberParam('iou_threshold', p.iou_threshold),
    maxDetections,
    classes: classesParam(p.classes),
    agnosticNms: boolParam('agnostic_nms', p.agnostic_nms),
  };
}

/** Detections of N images as the image signature's padded tensors. */
function detectionTensors(results: readonly DetectResult[]): OutputTensor[] {
  const n = results.length;
  const k = results.reduce((m, r) => Math.max(m, r.detections.length), 0);
  const boxes = new Float32Array(n * k * 4);
  const scores = new Float32Array(n * k);
  const classes = new Int32Array(n * k);
  const labels: Uint8Array[] = new Array<Uint8Array>(n * k).fill(new Uint8Array(0));
  const counts = new Int32Array(n);
  results.forEach((r, i) => {
    counts[i] = r.detections.length;
    r.detections.forEach((d, j) => {
      const at = i * k + j;
      boxes.set([d.xMin, d.yMin, d.xMax, d.yMax], at * 4);
      scores[at] = d.confidence;
      classes[at] = d.classId;
      labels[at] = Buffer.from(d.label, 'utf8');
    });
  });
  return [
    { name: 'BOXES', datatype: 'FP32', shape: [n, k, 4], data: boxes },
    { name: 'SCORES', datatype: 'FP32', shape: [n, k], data: scores },
    { name: 'CLASSES', datatype: 'INT32', shape: [n, k], data: classes },
    { name: 'LABELS', datatype: 'BYTES', shape: [n, k], data: labels },
    { name: 'COUNTS', datatype: 'INT32', shape: [n], data: counts },
  ];
}

/** Keeps the requested outputs, in the order asked; unknown names are refused. */
function selectOutputs(all: OutputTensor[], wanted: readonly { name: string }[], model: string): OutputTensor[] {
  if (wanted.length === 0) return all;
  return wanted.map(({ name }) => {
    const t = all.find((o) => o.name === name);
    if (!t)
      throw new SightlineError(
        'INVALID_INPUT',
        `model ${model} has no output ${name} for this input; it answers ${all.map((o) => o.name).join(', ')}`,
        { field: 'outputs' },
      );
    return t;
  });
}

/** Runs `fn` over `items` with at most `lanes` at once; the first failure aborts the rest and is thrown. */
async function inLanes<T, R>(
  items: readonly T[],
  lanes: number,
  signal: AbortSignal,
  fn: (item: T, i: number, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const out = new Array<R>(items.length);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: Math.min(lanes, items.length) }, async () => {
        for (let i = next++; i < items.length; i = next++) {
          try {
            out[i] = await fn(items[i]!, i, ac.signal);
          } catch (e) {
            ac.abort(e);
            throw e;
          }
        }
      }),
    );
    return out;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

export class OpenInference {
  constructor(
    private readonly detect: DetectService,
    private readonly tensors: TensorService,
    private readonly limits: OipLimits,
  ) {}

  /** Both signatures of (model, version); throws NOT_FOUND / NOT_READY / PRECONDITION like a request would. */
  metadata(model: string, version: string): ModelMetadata {
    const d = this.tensors.describe(model, parseVersion(model, version));
    return {
      name: d.model,
      versions: d.versions.map(String),
      platform: PLATFORM,
      inputs: [
        { name: IMAGE_INPUT, datatype: 'BYTES', shape: [-1] },
        { name: d.input.name, datatype: 'FP32', shape: d.input.dims },
      ],
      outputs: [...DETECTION_METADATA, ...d.outputs.map((o) => ({ name: o.name, datatype: 'FP32', shape: o.dims }))],
    };
  }

  modelReady(model: string, version: string): boolean {
    try {
      return this.tensors.isReady(model, parseVersion(model, version));
    } catch {
      return false; // a version that is not a number names nothing, so nothing ready
    }
  }

  /**
   * One inference: the input's name and datatype choose the signature. `routingKey`: the client's own
   * x-request-id, which a running canary's split hashes (else the request's id, else its first image).
   */
  async infer(req: InferRequest, signal: AbortSignal, routingKey?: string): Promise<InferResponse> {
    if (req.inputs.length !== 1) {
      throw new SightlineError(
        'INVALID_INPUT',
        `one input is expected (${IMAGE_INPUT} as BYTES, or the model's own input as FP32); got ${req.inputs.length}`,
        { field: 'inputs' },
      );
    }
    const input = req.inputs[0]!;
    checkElementCount(input);
    if (input.name === IMAGE_INPUT && Array.isArray(input.data))
      return this.images(req, input.data, signal, routingKey ?? (req.id || undefined));
    const d: ModelDescription = this.tensors.describe(req.model, parseVersion(req.model, req.version));
    if (input.name === d.input.name && input.data instanceof Float32Array) {
      const r = await this.tensors.run(d.model, d.version, input.data, input.shape, signal);
      const outputs: OutputTensor[] = r.outputs.map((o) => ({
        name: o.name,
        datatype: 'FP32',
        shape: o.dims,
        data: o.data,
      }));
      return {
        model: r.model,
        version: r.version,
        id: req.id,
        outputs: selectOutputs(outputs, req.outputs, r.model),
        images: [],
      };
    }
    throw new SightlineError(
      'INVALID_INPUT',
      `input ${input.name} is not an input of model ${d.model}: send ${IMAGE_INPUT} (BYTES, ` +
        `one encoded image per element) or ${d.input.name} (FP32 [${d.input.dims.join(', ')}])`,
      { field: 'inputs' },
    );
  }

  private async images(
    req: InferRequest,
    images: Uint8Array[],
    signal: AbortSignal,
    routingKey: string | undefined,
  ): Promise<InferResponse> {
    if (images.length === 0)
      throw new SightlineError('INVALID_INPUT', `input ${IMAGE_INPUT} holds no image`, { field: 'shape' });
    if (images.length > this.limits.maxImagesPerRequest) {
      throw new SightlineError(
        'INVALID_INPUT',
        `input ${IMAGE_INPUT} holds ${images.length} images; at most ${this.limits.maxImagesPerRequest} per request (oip.maxImagesPerRequest)`,
        { field: 'shape' },
      );
    }
    const p = detectParams(req.parameters);
    // Every image of a request is served by the same version, even if a promotion lands meanwhile; a
    // running canary's split is decided once for the request, and each image counted in its arm.
    const { model, version, arm } = this.detect.route(
      req.model,
      parseVersion(req.model, req.version),
      routingKey,
      images[0]!,
    );
    // The first image is admitted like a Detect call (refused when the server is at capacity); the
    // others are counted but never refused, as the request bounds them itself (maxImagesInFlight).
    const results = await inLanes(images, this.limits.maxImagesInFlight, signal, (image, i, s) =>
      this.detect.detect({ model, version, image, ...p, frameId: BigInt(i), arm }, s, { stream: i > 0 }),
    );
    const outputs = selectOutputs(detectionTensors(results), req.outputs, model);
    return { model, version, id: req.id, outputs, images: results };
  }
}
