/** Compares detections with reference detections the way DATA.md prescribes. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Detection } from '../../src/inference/index.js';
import { sharedPath } from './shared.js';

export interface RefDet {
  classId: number;
  label: string;
  score: number;
  box: [number, number, number, number];
}

export function iou(a: readonly number[], b: readonly number[]): number {
  const ix = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const iy = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = ix * iy;
  const ua = (a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter;
  return ua > 0 ? inter / ua : 0;
}

export const boxOf = (d: Detection): number[] => [d.xMin, d.yMin, d.xMax, d.yMax];

export function expectedFor(model: string, image: string): RefDet[] {
  const all = JSON.parse(readFileSync(sharedPath('expected', 'detections.json'), 'utf8')) as {
    models: Record<string, { images: Record<string, RefDet[]> }>;
  };
  const m = all.models[model];
  assert.ok(m, `no reference for ${model}`);
  return m.images[image]!;
}

export interface MatchOptions {
  /** Largest |score difference| of a match. */
  scoreTol?: number;
  iouMin?: number;
  /**
   * Detections and references scoring below this are left out of the comparison on both sides. 0 (the
   * default) compares everything. The shared references were made with libvips' antialiased linear
   * resize; the server resizes as OpenCV's INTER_LINEAR (what Ultralytics and YOLOX run at inference),
   * which moves low-confidence boxes by up to 0.09 and adds or drops boxes near the 0.25 threshold.
   */
  minScore?: number;
}

/**
 * Same class set and count, and a one-to-one match where each reference detection has a detection of
 * the same class with |score difference| <= scoreTol and IoU >= iouMin (among those >= minScore).
 */
export function assertMatchesReference(
  gotAll: readonly Detection[],
  wantAll: readonly RefDet[],
  where: string,
  opts: MatchOptions = {},
): void {
  const { scoreTol = 0.05, iouMin = 0.85, minScore = 0 } = opts;
  const got = gotAll.filter((d) => d.confidence >= minScore);
  const want = wantAll.filter((d) => d.score >= minScore);
  const describe = (ds: readonly Detection[]) =>
    ds.map((d) => `${d.label} ${d.confidence.toFixed(3)} [${boxOf(d).map(Math.round).join(',')}]`).join('; ');
  assert.deepEqual(
    [...new Set(got.map((d) => d.classId))].sort(),
    [...new Set(want.map((d) => d.classId))].sort(),
    `${where}: class set differs; got ${describe(got)}`,
  );
  assert.equal(
    got.length,
    want.length,
    `${where}: ${got.length} detections, expected ${want.length}; got ${describe(got)}`,
  );
  const used = new Set<number>();
  for (const w of want) {
    let best = -1;
    let bestIou = 0;
    got.forEach((g, i) => {
      if (used.has(i) || g.classId !== w.classId || Math.abs(g.confidence - w.score) > scoreTol) return;
      const v = iou(boxOf(g), w.box);
      if (v > bestIou) [best, bestIou] = [i, v];
    });
    assert.ok(
      best >= 0 && bestIou >= iouMin,
      `${where}: no match for ${w.label} ${w.score} [${w.box.join(',')}] (best IoU ${bestIou.toFixed(3)}); got ${describe(got)}`,
    );
    assert.equal(got[best]!.label, w.label, `${where}: label`);
    used.add(best);
  }
}
