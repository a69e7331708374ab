/**
 * `sightline validate`: runs a model over a YOLO-format dataset with the serving pipeline itself
 * (same preprocessing, worker pool, decoding and NMS) and scores it COCO-style. Settings default to
 * Ultralytics `val`: confidence 0.001, NMS IoU 0.7, 300 boxes, multi-label.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InferencePool, type ExecutionProvider, type FamilyName, type ModelInfo } from '../inference/index.js';
import { loadYoloDataset } from './dataset.js';
import type { DetectionMetrics } from './map.js';
import { scoreImages, VAL_SETTINGS, type LatencySummary } from './score.js';

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
  /** As the server's preprocess.jpegDctScaling (default true). */
  jpegDctScaling?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface ValidateReport {
  metrics: DetectionMetrics;
  /** Per image, waiting for a worker excluded (score.ts). */
  latency: LatencySummary;
  model: { path: string; sha256: string; family: FamilyName; input: string; provider: ExecutionProvider };
  settings: {
    confThreshold: number;
    iouThreshold: number;
    maxDetections: number;
    applyIccProfile: boolean;
    decoder: 'auto' | 'sharp';
    jpegDctScaling: boolean;
  };
  images: number;
  seconds: number;
}

export async function validateModel(o: ValidateOptions): Promise<ValidateReport> {
  const t0 = performance.now();
  const settings = {
    confThreshold: o.confThreshold ?? VAL_SETTINGS.confThreshold,
    iouThreshold: o.iouThreshold ?? VAL_SETTINGS.iouThreshold,
    maxDetections: o.maxDetections ?? VAL_SETTINGS.maxDetections,
    applyIccProfile: o.applyIccProfile ?? false,
    decoder: o.decoder ?? 'auto',
    jpegDctScaling: o.jpegDctScaling ?? true,
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
      cpuMemArena: true,
    });
    const prep = {
      limits: { maxBytes: 64 * 1024 * 1024, maxPixels: 100_000_000 },
      options: {
        applyIccProfile: settings.applyIccProfile,
        decoder: settings.decoder,
        jpegDctScaling: settings.jpegDctScaling,
      },
    };
    const labelled = images.map((img) => ({
      image: async () => new Uint8Array(await readFile(img.path)),
      labels: () => (img.labelPath ? readFile(img.labelPath, 'utf8') : Promise.resolve(null)),
    }));
    // Two images per worker in flight, so each worker has the next one as soon as it is free.
    const r = await scoreImages(pool, 'validate', info, labelled, {
      settings,
      prep,
      lanes: workers * 2,
      signal: new AbortController().signal,
      onProgress: o.onProgress,
    });
    return {
      metrics: r.metrics,
      latency: r.latency,
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
