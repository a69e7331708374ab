/**
 * `sightline validate`: runs a model over a YOLO-format dataset with the serving pipeline itself
 * (same preprocessing, worker pool, decoding and NMS) and scores it COCO-style. Settings default to
 * Ultralytics `val`: confidence 0.001, NMS IoU 0.7, 300 boxes, multi-label.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  detectImage,
  InferencePool,
  type ExecutionProvider,
  type FamilyName,
  type ModelInfo,
} from '../inference/index.js';
import { loadYoloDataset, readYoloLabels } from './dataset.js';
import { evaluateDetections, type DetectionMetrics, type ImageGroundTruth, type ImagePredictions } from './map.js';

export interface ValidateOptions {
  modelPath: string;
  datasetDir: string;
  labelsPath?: string;
  family?: FamilyName;
  confThreshold?: number;
  iouThreshold?: number;
  maxDetections?: number;
  workers?: number;
  intraOpThreads?: number;
  executionProviders?: ExecutionProvider[];
  /** Only the first N images (sorted by path). */
  limit?: number;
  /** As the server's preprocess.applyIccProfile (default false). */
  applyIccProfile?: boolean;
  /** 'sharp': decode every image with sharp/libvips instead of libjpeg-turbo (to compare the two). */
  decoder?: 'auto' | 'sharp';
  onProgress?: (done: number, total: number) => void;
}

export interface ValidateReport {
  metrics: DetectionMetrics;
  model: { path: string; sha256: string; family: FamilyName; input: string; provider: ExecutionProvider };
  settings: {
    confThreshold: number;
    iouThreshold: number;
    maxDetections: number;
    applyIccProfile: boolean;
    decoder: 'auto' | 'sharp';
  };
  images: number;
  seconds: number;
}

const EMPTY_GT: ImageGroundTruth = { boxes: new Float32Array(0), classes: new Int32Array(0), count: 0 };

export async function validateModel(o: ValidateOptions): Promise<ValidateReport> {
  const t0 = performance.now();
  const settings = {
    confThreshold: o.confThreshold ?? 0.001,
    iouThreshold: o.iouThreshold ?? 0.7,
    maxDetections: o.maxDetections ?? 300,
    applyIccProfile: o.applyIccProfile ?? false,
    decoder: o.decoder ?? 'auto',
  };
  const dataset = await loadYoloDataset(o.datasetDir);
  const images = dataset.images.slice(0, o.limit ?? dataset.images.length);
  const bytes = await readFile(o.modelPath);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const labelsText = o.labelsPath ? await readFile(o.labelsPath, 'utf8') : undefined;
  const workers = o.workers ?? 2;
  const pool = await InferencePool.create({ workers, maxQueue: 1024 });
  try {
    const info: ModelInfo = await pool.load('validate', new Uint8Array(bytes), {
      family: o.family,
      labelsText,
      intraOpThreads: o.intraOpThreads ?? 1,
      executionProviders: o.executionProviders ?? ['cpu'],
      warmupRuns: 1,
      cpuMemArena: false,
    });
    const preds: ImagePredictions[] = new Array(images.length);
    const gts: ImageGroundTruth[] = new Array(images.length);
    const never = new AbortController().signal;
    let next = 0;
    let done = 0;
    const prep = {
      limits: { maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 },
      options: { applyIccProfile: settings.applyIccProfile, decoder: settings.decoder },
    };
    // Two images per worker in flight, so each worker has the next one as soon as it is free.
    const lane = async () => {
      for (let i = next++; i < images.length; i = next++) {
        const img = images[i]!;
        const out = await detectImage(
          pool,
          'validate',
          info,
          await readFile(img.path),
          prep,
          {
            decode: { confThreshold: settings.confThreshold, classFilter: null, multiLabel: true },
            nms: { iouThreshold: settings.iouThreshold, maxDetections: settings.maxDetections, agnostic: false },
          },
          never,
        );
        const { srcWidth: w, srcHeight: h } = out.geometry;
        const n = out.detections.length;
        const p = { boxes: new Float32Array(n * 4), scores: new Float32Array(n), classes: new Int32Array(n), count: n };
        out.detections.forEach((d, k) => {
          p.boxes.set([d.xMin, d.yMin, d.xMax, d.yMax], k * 4);
          p.scores[k] = d.confidence;
          p.classes[k] = d.classId;
        });
        preds[i] = p;
        gts[i] = img.labelPath ? readYoloLabels(await readFile(img.labelPath, 'utf8'), w, h) : EMPTY_GT;
        o.onProgress?.(++done, images.length);
      }
    };
    await Promise.all(Array.from({ length: workers * 2 }, lane));
    return {
      metrics: evaluateDetections(preds, gts),
      model: {
        path: o.modelPath,
        sha256,
        family: info.family,
        input: `${info.inputWidth}x${info.inputHeight}`,
        provider: info.provider,
      },
      settings,
      images: images.length,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await pool.close();
  }
}
