/**
 * Scores a loaded model on labelled images with the serving pipeline itself (detectImage: the same
 * header checks, decoders, letterbox, worker pool, family decoding and NMS as a Detect call) and
 * COCO-style metrics. One loop for `sightline validate` (files on disk) and for the registry's
 * evaluations (a golden dataset's blobs); where the bytes come from is the caller's.
 */
import { detectImage, type ImagePrep, type InferencePool, type ModelInfo } from '../inference/index.js';
import { readYoloLabels } from './dataset.js';
import { evaluateDetections, type DetectionMetrics, type ImageGroundTruth, type ImagePredictions } from './map.js';

/** Ultralytics `val` settings: what both validate and registry evaluations score with by default. */
export const VAL_SETTINGS = { confThreshold: 0.001, iouThreshold: 0.7, maxDetections: 300 } as const;

export interface ScoreSettings {
  confThreshold: number;
  iouThreshold: number;
  maxDetections: number;
}

/** One labelled image: its bytes, and its YOLO label text (null: no label file, a background image). */
export interface LabelledImage {
  image(): Promise<Uint8Array>;
  labels(): Promise<string | null>;
}

/** Time one image spent in the pipeline, waiting for a worker excluded (ms). */
export interface LatencySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly meanMs: number;
}

export interface ScoreResult {
  readonly metrics: DetectionMetrics;
  readonly latency: LatencySummary;
}

const EMPTY_GT: ImageGroundTruth = { boxes: new Float32Array(0), classes: new Int32Array(0), count: 0 };

/**
 * Runs every image through the model loaded under `key` (multi-label decoding, as Ultralytics val),
 * `lanes` images at a time, and scores the detections against the labels. The latency is each image's
 * decode, preprocessing, inference and postprocessing: comparable between versions scored alike,
 * however busy the pool was.
 */
export async function scoreImages(
  pool: InferencePool,
  key: string,
  info: Pick<ModelInfo, 'inputWidth' | 'inputHeight' | 'letterbox'>,
  images: readonly LabelledImage[],
  o: {
    settings: ScoreSettings;
    prep: ImagePrep;
    lanes: number;
    signal: AbortSignal;
    onProgress?: (done: number, total: number) => void;
  },
): Promise<ScoreResult> {
  const preds: ImagePredictions[] = new Array(images.length);
  const gts: ImageGroundTruth[] = new Array(images.length);
  const ms: number[] = new Array(images.length);
  let next = 0;
  let done = 0;
  const lane = async () => {
    for (let i = next++; i < images.length; i = next++) {
      const img = images[i]!;
      const bytes = await img.image();
      // Admitted like a stream frame: bounded by the lanes, never refused as over capacity.
      const ticket = pool.admit({ bypassLimit: true });
      const out = await detectImage(
        pool,
        key,
        info,
        bytes,
        o.prep,
        {
          decode: { confThreshold: o.settings.confThreshold, classFilter: null, multiLabel: true },
          nms: { iouThreshold: o.settings.iouThreshold, maxDetections: o.settings.maxDetections, agnostic: false },
        },
        o.signal,
        ticket,
      ).finally(() => ticket.release());
      const t = out.timing;
      ms[i] = t.decodeMs + t.preprocessMs + t.inferenceMs + t.postprocessMs;
      const { srcWidth: w, srcHeight: h } = out.geometry;
      const n = out.detections.length;
      const p = { boxes: new Float32Array(n * 4), scores: new Float32Array(n), classes: new Int32Array(n), count: n };
      out.detections.forEach((d, k) => {
        p.boxes.set([d.xMin, d.yMin, d.xMax, d.yMax], k * 4);
        p.scores[k] = d.confidence;
        p.classes[k] = d.classId;
      });
      preds[i] = p;
      const text = await img.labels();
      gts[i] = text === null ? EMPTY_GT : readYoloLabels(text, w, h);
      o.onProgress?.(++done, images.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.lanes) }, lane));
  return { metrics: evaluateDetections(preds, gts), latency: latencySummary(ms) };
}

function latencySummary(ms: readonly number[]): LatencySummary {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) =>
    s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]! : Number.NaN;
  return { p50Ms: at(0.5), p99Ms: at(0.99), meanMs: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}
