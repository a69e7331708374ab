/**
 * One detection request: validate → pick the model version (a running canary's split included) →
 * admission → the image through the inference pool (header and limits here; decoding, letterbox, ONNX
 * Runtime and NMS in a worker thread). Once the answer exists: the canary's tally, and the shadow's
 * sampling (which only schedules work for after the answer is sent).
 */
import { SightlineError } from '../errors.js';
import {
  detectImage,
  type Detection,
  type ImagePrep,
  type ImageRequest,
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
import type { CanaryArm, ModelManager } from './models.js';
import { requestBucket } from './routing.js';
import type { ShadowRunner } from './shadow.js';
import { addCanaryRequest } from './trial-stats.js';
import type { TrialTallies } from './trial-tallies.js';

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
  /**
   * What a running canary's split hashes: the client's own x-request-id (so its retries land on the same
   * version), or the stream's request id. Absent: the image itself is hashed.
   */
  routingKey?: string;
  /**
   * The canary arm a caller already chose for this request (route(): every image of a ModelInfer call
   * falls on the same side); `version` is then the arm's version. The request is counted in that arm.
   */
  arm?: CanaryArm;
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

/** Shadows and canaries on this server: where their tallies go, and who runs shadow samples. */
export interface TrialHooks {
  tallies: TrialTallies;
  shadow: ShadowRunner;
}

/** Failures that say nothing about a version: the client's own input, the client leaving, a refusal at capacity. */
const NOT_THE_VERSIONS: ReadonlySet<string> = new Set(['INVALID_INPUT', 'CANCELLED', 'OVERLOADED', 'NOT_FOUND']);

export class DetectService {
  private readonly prep: ImagePrep;

  constructor(
    private readonly models: ModelManager,
    private readonly pool: InferencePool,
    private readonly settings: DetectSettings,
    /** Drift monitoring: gets every request's features. None: no features are computed at all. */
    private readonly observer?: SampleObserver,
    /** Shadows and canaries; none in tools and tests that need neither. */
    private readonly trials?: TrialHooks,
  ) {
    this.prep = {
      limits: { maxBytes: settings.limits.maxImageBytes, maxPixels: settings.limits.maxImagePixels },
      options: settings.preprocess,
    };
  }

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
   * resolve() for a request of several images (ModelInfer): a running canary's split is decided once,
   * by `key` (the client's request id) or else the first image, so every image is served by the same
   * version. Pass `arm` and `version` on to each image's detect().
   */
  route(
    model: string,
    version: number,
    key: string | undefined,
    first: Uint8Array,
  ): { model: string; version: number; arm: CanaryArm | undefined } {
    const { v, canary } = this.models.acquireRouted(model, version, () => requestBucket(key, first));
    this.models.release(v);
    return { model: v.name, version: v.version, arm: canary ?? undefined };
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
    const { v, canary } = input.arm
      ? { v: this.models.acquire(input.model, input.version), canary: input.arm }
      : this.models.acquireRouted(input.model, input.version, () => requestBucket(input.routingKey, input.image));
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
      const request: ImageRequest = {
        decode: {
          confThreshold: conf,
          classFilter: input.classes.length ? new Set(input.classes) : null,
          multiLabel: false,
        },
        nms: { iouThreshold: iou, maxDetections: maxDet, agnostic: input.agnosticNms },
      };
      const r = await detectImage(
        this.pool,
        v.key,
        v.info,
        input.image,
        this.prep,
        { ...request, sampleStep: wantFeatures ? FEATURE_STEP : 0 },
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
      const t = r.timing;
      const totalMs = performance.now() - t0;
      if (canary) this.countCanary(v.name, canary, totalMs, false);
      // Calibration images are not traffic: no shadow for them either.
      if (opts.observe !== false) {
        this.trials?.shadow.offer({
          model: v.name,
          version: v.version,
          image: input.image,
          request,
          detections: r.detections,
          serviceMs: t.decodeMs + t.preprocessMs + t.inferenceMs + t.postprocessMs,
          narrow: !r.latencySession,
        });
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
          decodeMs: t.decodeMs,
          preprocessMs: t.preprocessMs,
          queueMs: t.queueMs,
          inferenceMs: t.inferenceMs,
          postprocessMs: t.postprocessMs,
          totalMs,
        },
        ...(features ? { features } : {}),
      };
    } catch (e) {
      if (canary && !(e instanceof SightlineError && NOT_THE_VERSIONS.has(e.code)))
        this.countCanary(v.name, canary, performance.now() - t0, true);
      throw e;
    } finally {
      ticket?.release();
      this.models.release(v);
    }
  }

  private countCanary(model: string, c: CanaryArm, ms: number, failed: boolean): void {
    if (this.trials) addCanaryRequest(this.trials.tallies.canary(c.trialId, model), c.arm, ms, failed);
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
