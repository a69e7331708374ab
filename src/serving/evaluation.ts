/**
 * A registered version scored on a golden dataset stored in the registry: the version's file and the
 * dataset's files come from the blob store (each verified against its sha256), and the images go
 * through the serving pipeline itself (eval/score.ts over this process's inference pool), with
 * Ultralytics val settings. The report is what `registry versions` and `show` print and what the
 * promotion gates read.
 */
import type { FamilyName } from '../identifiers.js';
import { pairYoloFiles, scoreImages, VAL_SETTINGS, type LatencySummary, type ScoreSettings } from '../eval/index.js';
import type { ImagePrep, InferencePool } from '../inference/index.js';
import type { BlobStore, DatasetFile, DatasetRecord, VersionRecord } from '../registry/index.js';
import type { LoadSettings } from './models.js';

export interface EvaluationReport {
  readonly datasetSha256: string;
  readonly images: number;
  readonly boxes: number;
  readonly map50: number;
  readonly map5095: number;
  /** At confidence 0.25, IoU 0.5. */
  readonly precision: number;
  readonly recall: number;
  /** Classes with ground truth. */
  readonly perClass: readonly { classId: number; name: string; ap50: number; ap5095: number; boxes: number }[];
  /** Per image, waiting for a worker excluded. */
  readonly latency: LatencySummary;
  readonly settings: ScoreSettings;
  /** The execution provider the version ran on. */
  readonly provider: string;
  readonly seconds: number;
}

export interface EvaluationDeps {
  pool: InferencePool;
  blobs: BlobStore;
  /** How this process loads versions (the pool settings). */
  load: LoadSettings;
  prep: ImagePrep;
}

let runs = 0;

export async function evaluateVersion(
  deps: EvaluationDeps,
  version: VersionRecord,
  modelBytes: Uint8Array,
  dataset: DatasetRecord,
  files: readonly DatasetFile[],
  signal: AbortSignal,
): Promise<EvaluationReport> {
  const t0 = performance.now();
  const { pool, blobs } = deps;
  const key = `evaluate:${version.model}@${version.version}#${++runs}`;
  const names = dataset.classNames.length ? dataset.classNames : version.classNames;
  // One-thread sessions only: the latency of every evaluation is measured alike, whatever else runs.
  const info = await pool.load(key, modelBytes, {
    ...deps.load,
    latencyThreads: 0,
    warmupRuns: 1,
    family: version.family as FamilyName,
    labelsText: version.classNames.join('\n'),
  });
  try {
    const sha = new Map(files.map((f) => [f.path, f.sha256]));
    const text = async (path: string) => (await blobs.read(sha.get(path)!)).toString('utf8');
    const images = pairYoloFiles(sha.keys()).map((i) => ({
      image: async () => new Uint8Array(await blobs.read(sha.get(i.path)!)),
      labels: () => (i.labelPath === null ? Promise.resolve(null) : text(i.labelPath)),
    }));
    const r = await scoreImages(pool, key, info, images, {
      settings: VAL_SETTINGS,
      prep: deps.prep,
      lanes: 2 * pool.stats().workers,
      signal,
    });
    const m = r.metrics;
    return {
      datasetSha256: dataset.sha256,
      images: m.numImages,
      boxes: m.numGt,
      map50: m.map50,
      map5095: m.map5095,
      precision: m.precision,
      recall: m.recall,
      perClass: m.perClass.map((c) => ({
        classId: c.classId,
        name: names[c.classId] ?? `class ${c.classId}`,
        ap50: c.ap50,
        ap5095: c.ap5095,
        boxes: c.numGt,
      })),
      latency: r.latency,
      settings: { ...VAL_SETTINGS },
      provider: info.provider,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await pool.unload(key).catch(() => undefined);
  }
}
