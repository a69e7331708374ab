/**
 * One detection request: validate → pick the model version → admission → the image through the
 * inference pool (header and limits here; decoding, letterbox, ONNX Runtime and NMS in a worker thread).
 */
import { SightlineError } from '../errors.js';
import {
  detectImage,
  type Detection,
  type InferencePool,
  type PixelSample,
  type PrepareOptions,
  type Ticket,
} from '../inference/index.js';
import {
  featureSample,
  inputFeatures,
  outputFeatures,
  type FeatureSample,
  type InputFeatures,
} from '../monitoring/index.js';
import type { SampleObserver } from './drift.js';
import type { ModelManager } from './models.js';

export interface DetectInput {
  model: string;
  /** 0 = the model's active version. */
  version: number;
  image: Uint8Array;
  /** 0 = server default. */
  confidenceThreshold: number;
  iouThreshold: number;
  maxDetections: number;
  classes: readonly number[];
  agnosticNms: boolean;
  frameId: bigint;
}

export interface Timing {
  decodeMs: number;
  preprocessMs: number;
  queueMs: number;
  inferenceMs: number;
  postprocessMs: number;
  totalMs: number;
}

export interface DetectResult {
  model: string;
  version: number;
  modelSha256: string;
  frameId: bigint;
  imageWidth: number;
  imageHeight: number;
  detections: Detection[];
  timing: Timing;
  /** Drift-monitoring features of this request, when they were computed (an observer is set, or asked for). */
  features?: FeatureSample;
}

export interface DetectOptions {
  /**
   * The caller is a stream frame (or another caller bounding its own concurrency), already limited by
   * its own in-flight limit, so it is counted in the admission budget but never refused.
   */
  stream?: boolean;
  /** Compute the drift features even without an observer (calibration). */
  features?: boolean;
  /** false: do not report this request to the observer (calibration images are not traffic). */
  observe?: boolean;
}

export interface DetectSettings {
  defaults: { confidenceThreshold: number; iouThreshold: number; maxDetections: number };
  limits: { maxImageBytes: number; maxImagePixels: number; maxDetections: number };
  preprocess: PrepareOptions;
}

function threshold(name: string, v: number, dflt: number): number {
  if (v === 0) return dflt;
  if (!Number.isFinite(v) || v < 0 || v > 1)
    throw new SightlineError('INVALID_INPUT', `${name} must be in (0, 1], or 0 for the default ${dflt}; got ${v}`, {
      field: name,
    });
  return v;
}

export class DetectService {
  constructor(
    private readonly models: ModelManager,
    private readonly pool: InferencePool,
    private readonly settings: DetectSettings,
    /** Drift monitoring: gets every request's features. None: no features are computed at all. */
    private readonly observer?: SampleObserver,
  ) {}

  /** The refusal a new request would get now (server at capacity), or null: lets the transport refuse early. */
  refusal(): SightlineError | null {
    const r = this.pool.refusal();
    if (r) this.pool.countRefused();
    return r;
  }

  /**
   * The model and version serving (model, version) now, with its class names; throws the status a
   * request would get (NOT_FOUND, PRECONDITION, NOT_READY) when it resolves to none.
   */
  resolve(model: string, version: number): { model: string; version: number; names: readonly string[] } {
    const v = this.models.acquire(model, version);
    this.models.release(v);
    return { model: v.name, version: v.version, names: v.info.names };
  }

  /**
   * The model and version a request naming (model, version) is served by right now, or null when it
   * resolves to none. For labelling failed requests in metrics: names that match nothing loaded never
   * become label values, so clients cannot grow the metric series.
   */
  labelsFor(model: string, version: number): { model: string; version: number } | null {
    try {
      const v = this.models.acquire(model, version);
      this.models.release(v);
      return { model: v.name, version: v.version };
    } catch {
      return null;
    }
  }

  /** See DetectOptions. */
  async detect(input: DetectInput, signal: AbortSignal, opts: DetectOptions = {}): Promise<DetectResult> {
    const t0 = performance.now();
    const { defaults, limits } = this.settings;
    const conf = threshold('confidence_threshold', input.confidenceThreshold, defaults.confidenceThreshold);
    const iou = threshold('iou_threshold', input.iouThreshold, defaults.iouThreshold);
    const maxDet = input.maxDetections === 0 ? defaults.maxDetections : input.maxDetections;
    if (maxDet > limits.maxDetections) {
      throw new SightlineError(
        'INVALID_INPUT',
        `max_detections must be at most ${limits.maxDetections}; got ${maxDet}`,
        { field: 'max_detections' },
      );
    }
    const v = this.models.acquire(input.model, input.version);
    let ticket: Ticket | undefined;
    try {
      const bad = input.classes.find((c) => c >= v.info.numClasses);
      if (bad !== undefined) {
        throw new SightlineError(
          'INVALID_INPUT',
          `classes: id ${bad} is out of range; model ${v.name} has ${v.info.numClasses} classes (0-${v.info.numClasses - 1})`,
          {
            field: 'classes',
          },
        );
      }
      signal.throwIfAborted();
      // Admission before decoding: a refused request costs no decode time.
      ticket = this.pool.admit({ bypassLimit: opts.stream });
      const wantFeatures = !!this.observer || !!opts.features;
      const r = await detectImage(
        this.pool,
        v.key,
        v.info,
        input.image,
        {
          limits: { maxBytes: limits.maxImageBytes, maxPixels: limits.maxImagePixels },
          options: this.settings.preprocess,
        },
        {
          decode: {
            confThreshold: conf,
            classFilter: input.classes.length ? new Set(input.classes) : null,
            multiLabel: false,
          },
          nms: { iouThreshold: iou, maxDetections: maxDet, agnostic: input.agnosticNms },
          sampleStep: wantFeatures ? FEATURE_STEP : 0,
        },
        signal,
        ticket,
      );
      const g = r.geometry;
      const inputFeats = r.sample ? inputFeaturesOf(r.sample, g.srcWidth, g.srcHeight) : undefined;
      let features: FeatureSample | undefined;
      if (inputFeats) {
        // Requests asking for a lower threshold than the default are judged on the default's detections, so
        // a client sweeping thresholds does not look like prediction drift.
        const floor = this.settings.defaults.confidenceThreshold;
        features = featureSample(
          inputFeats,
          outputFeatures(conf < floor ? r.detections.filter((d) => d.confidence >= floor) : r.detections),
        );
        if (this.observer && opts.observe !== false)
          this.observer.onSample({ model: v.name, version: v.version, names: v.info.names }, features);
      }
      return {
        model: v.name,
        version: v.version,
        modelSha256: v.sha256,
        frameId: input.frameId,
        imageWidth: g.srcWidth,
        imageHeight: g.srcHeight,
        detections: r.detections,
        timing: {
          decodeMs: r.timing.decodeMs,
          preprocessMs: r.timing.preprocessMs,
          queueMs: r.timing.queueMs,
          inferenceMs: r.timing.inferenceMs,
          postprocessMs: r.timing.postprocessMs,
          totalMs: performance.now() - t0,
        },
        ...(features ? { features } : {}),
      };
    } finally {
      ticket?.release();
      this.models.release(v);
    }
  }
}

/** Drift's input features read every 4th pixel in x and y of the letterboxed image (padding excluded). */
const FEATURE_STEP = 4;

/** Input features from the worker's sample of the letterboxed image; undefined if it is degenerate. */
function inputFeaturesOf(sample: PixelSample, srcWidth: number, srcHeight: number): InputFeatures | undefined {
  try {
    return inputFeatures(
      sample.pixels,
      sample.width,
      sample.height,
      srcWidth,
      srcHeight,
      { left: 0, top: 0, width: sample.width, height: sample.height },
      { step: 1 },
    );
  } catch {
    return undefined; // e.g. a 1-pixel-wide strip resized to nothing: monitoring never fails a request
  }
}
