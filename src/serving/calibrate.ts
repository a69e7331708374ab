/**
 * Reference profiles from a calibration image set: every image runs through the real detection path
 * pinned to the version (default thresholds), so the profile's prediction features are the ones
 * traffic will have; the profile is stored and put in use by the DriftMonitor.
 */
import { SightlineError } from '../errors.js';
import { buildProfile, type FeatureSample, type ReferenceProfile } from '../monitoring/index.js';
import type { DetectService } from './detect.js';
import type { DriftMonitor } from './drift.js';

export interface CalibrationImage {
  readonly data: Uint8Array;
  /** For the reasons an image was skipped. */
  readonly name?: string;
}

export interface CalibrationResult {
  readonly model: string;
  readonly version: number;
  readonly names: readonly string[];
  readonly profile: ReferenceProfile;
  readonly skipped: number;
  /** "name: reason" of the first MAX_REASONS skipped images. */
  readonly skippedReasons: readonly string[];
}

const MAX_REASONS = 10;
/** Images in detection at once: enough to keep a few workers busy, bounded so memory stays small. */
const DEFAULT_CONCURRENCY = 4;

/** Client mistakes skip an image; anything else (cancelled, shutting down, internal) fails the build. */
const SKIPPABLE = new Set(['INVALID_INPUT']);

export async function calibrate(
  detect: DetectService,
  monitor: DriftMonitor,
  /** version 0: the active one. */
  target: { model: string; version: number },
  images: AsyncIterable<CalibrationImage>,
  signal: AbortSignal,
  /** authorization: the caller's, forwarded when the profile is stored in a remote registry. */
  opts: { concurrency?: number; authorization?: string } = {},
): Promise<CalibrationResult> {
  // Pin the version now: images keep going to it even if a promotion happens meanwhile.
  const v = detect.resolve(target.model, target.version);
  const samples: FeatureSample[] = [];
  const reasons: string[] = [];
  let skipped = 0;
  let failure: unknown = null;
  const inflight = new Set<Promise<void>>();
  const limit = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  let index = 0;

  const one = async (img: CalibrationImage, i: number): Promise<void> => {
    try {
      const r = await detect.detect(
        {
          model: v.model,
          version: v.version,
          image: img.data,
          confidenceThreshold: 0,
          iouThreshold: 0,
          maxDetections: 0,
          classes: [],
          agnosticNms: false,
          frameId: BigInt(i),
        },
        signal,
        // Bounded by this loop's own concurrency; features without reporting them as traffic.
        { stream: true, features: true, observe: false },
      );
      if (r.features) samples.push(r.features);
      else skip(img, i, 'no features (degenerate image)');
    } catch (e) {
      if (e instanceof SightlineError && SKIPPABLE.has(e.code)) skip(img, i, e.message);
      else failure ??= e;
    }
  };
  const skip = (img: CalibrationImage, i: number, why: string) => {
    skipped++;
    if (reasons.length < MAX_REASONS) reasons.push(`${img.name || `image ${i + 1}`}: ${why}`);
  };

  try {
    for await (const img of images) {
      if (failure) break;
      const p = one(img, index++).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= limit) await Promise.race(inflight);
    }
  } finally {
    await Promise.all(inflight); // one() never rejects
  }
  if (failure) throw failure;
  signal.throwIfAborted();
  if (samples.length === 0) {
    throw new SightlineError(
      'INVALID_INPUT',
      index === 0
        ? 'no calibration images were sent'
        : `none of the ${index} calibration images could be used (${reasons[0] ?? ''})`,
    );
  }
  const profile = buildProfile(samples, 'calibration', { modelVersion: String(v.version) });
  await monitor.setProfile(v.model, v.version, profile, opts.authorization);
  return { model: v.model, version: v.version, names: v.names, profile, skipped, skippedReasons: reasons };
}
