/** NMS: suppression and keep cases, class-wise vs agnostic, maxDetections, order, and a brute-force cross-check. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { iou, MAX_NMS_CANDIDATES, nms } from '../../../src/inference/nms/nms.js';
import type { Candidates, NmsOptions } from '../../../src/inference/types.js';

type Box = [number, number, number, number];
function cands(list: { box: Box; score: number; cls?: number }[]): Candidates {
  const boxes = new Float32Array(list.length * 4);
  const scores = new Float32Array(list.length);
  const classes = new Int32Array(list.length);
  list.forEach((c, i) => {
    boxes.set(c.box, i * 4);
    scores[i] = c.score;
    classes[i] = c.cls ?? 0;
  });
  return { count: list.length, boxes, scores, classes };
}
const classWise: NmsOptions = { iouThreshold: 0.45, maxDetections: 300, agnostic: false };
const agnostic: NmsOptions = { ...classWise, agnostic: true };
const kept = (c: Candidates, o: NmsOptions): number[] => Array.from(nms(c, o));

/** The textbook O(n²) greedy NMS, to cross-check the fast one. */
function reference(c: Candidates, o: NmsOptions): number[] {
  const idx = Array.from({ length: c.count }, (_, i) => i).sort((a, b) => c.scores[b] - c.scores[a] || a - b);
  const out: number[] = [];
  const dead = new Set<number>();
  for (const i of idx) {
    if (dead.has(i)) continue;
    out.push(i);
    if (out.length === o.maxDetections) break;
    for (const j of idx) {
      if (j === i || dead.has(j) || (!o.agnostic && c.classes[i] !== c.classes[j])) continue;
      if (iou(c.boxes.subarray(i * 4, i * 4 + 4), c.boxes.subarray(j * 4, j * 4 + 4)) > o.iouThreshold) dead.add(j);
    }
  }
  return out;
}

describe('iou', () => {
  test('hand-computed values', () => {
    assert.equal(iou([0, 0, 10, 10], [0, 0, 10, 10]), 1);
    assert.equal(iou([0, 0, 10, 10], [5, 0, 15, 10]), 50 / 150);
    assert.equal(iou([0, 0, 10, 10], [10, 0, 20, 10]), 0, 'touching edges');
    assert.equal(iou([0, 0, 10, 10], [2, 2, 4, 4]), 4 / 100);
    assert.equal(iou([0, 0, 0, 0], [0, 0, 0, 0]), 0, 'empty boxes');
  });
});

describe('nms', () => {
  test('suppresses an overlapping lower-scored box and keeps a distant one, best first', () => {
    const c = cands([
      { box: [0, 0, 10, 10], score: 0.5 },
      { box: [1, 0, 11, 10], score: 0.9 }, // IoU with #0 = 90/110
      { box: [50, 50, 60, 60], score: 0.7 },
    ]);
    assert.deepEqual(kept(c, classWise), [1, 2]);
  });

  test('IoU exactly at the threshold is kept (suppression needs IoU > threshold)', () => {
    // IoU = 50/150 = 1/3
    const c = cands([
      { box: [0, 0, 10, 10], score: 0.9 },
      { box: [5, 0, 15, 10], score: 0.8 },
    ]);
    assert.deepEqual(kept(c, { ...classWise, iouThreshold: 0.5 }), [0, 1]);
    assert.deepEqual(kept(c, { ...classWise, iouThreshold: 0.3 }), [0]);
  });

  test('a suppressed box does not suppress others (greedy order matters)', () => {
    // A suppresses B; B would suppress C, but B is gone, and A-C overlap little
    const c = cands([
      { box: [0, 0, 10, 10], score: 0.9 }, // A
      { box: [3, 0, 13, 10], score: 0.8 }, // B: IoU(A,B) = 70/130
      { box: [6, 0, 16, 10], score: 0.7 }, // C: IoU(B,C) = 70/130, IoU(A,C) = 40/160
    ]);
    assert.deepEqual(kept(c, classWise), [0, 2]);
  });

  test('class-wise keeps overlapping boxes of different classes; agnostic does not', () => {
    const c = cands([
      { box: [0, 0, 10, 10], score: 0.9, cls: 0 },
      { box: [0, 0, 10, 10], score: 0.8, cls: 1 },
      { box: [0, 1, 10, 11], score: 0.7, cls: 0 },
    ]);
    assert.deepEqual(kept(c, classWise), [0, 1]);
    assert.deepEqual(kept(c, agnostic), [0]);
  });

  test('class ids outside the fast per-class path still compare by class', () => {
    const c = cands([
      { box: [0, 0, 10, 10], score: 0.9, cls: -1 },
      { box: [0, 0, 10, 10], score: 0.8, cls: 70_000 },
      { box: [0, 0, 10, 10], score: 0.7, cls: -1 },
    ]);
    assert.deepEqual(kept(c, classWise), [0, 1]);
  });

  test('stops at maxDetections, keeping the best', () => {
    const list = Array.from({ length: 20 }, (_, i) => ({
      box: [i * 20, 0, i * 20 + 10, 10] as Box,
      score: (i + 1) / 21,
    }));
    assert.deepEqual(kept(cands(list), { ...classWise, maxDetections: 3 }), [19, 18, 17]);
    assert.deepEqual(kept(cands(list), { ...classWise, maxDetections: 0 }), []);
  });

  test('output is sorted by score desc; ties keep the lower index first', () => {
    const c = cands([
      { box: [0, 0, 1, 1], score: 0.3 },
      { box: [10, 0, 11, 1], score: 0.6 },
      { box: [20, 0, 21, 1], score: 0.6 },
      { box: [30, 0, 31, 1], score: 0.9 },
    ]);
    assert.deepEqual(kept(c, classWise), [3, 1, 2, 0]);
  });

  test('empty input and candidates beyond count are ignored', () => {
    assert.deepEqual(kept(cands([]), classWise), []);
    const c = cands([
      { box: [0, 0, 1, 1], score: 0.3 },
      { box: [10, 0, 11, 1], score: 0.9 },
    ]);
    assert.deepEqual(kept({ ...c, count: 1 }, classWise), [0]);
  });

  test('agrees with a brute-force greedy NMS on random clustered candidates', () => {
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 10; round++) {
      const list = Array.from({ length: 250 }, () => {
        const x = Math.floor(rnd() * 8) * 40 + rnd() * 10;
        const y = Math.floor(rnd() * 8) * 40 + rnd() * 10;
        const w = 20 + rnd() * 30;
        return { box: [x, y, x + w, y + w] as Box, score: Math.round(rnd() * 100) / 100, cls: Math.floor(rnd() * 3) };
      });
      const c = cands(list);
      for (const o of [classWise, agnostic, { ...classWise, maxDetections: 10 }, { ...agnostic, iouThreshold: 0.7 }]) {
        assert.deepEqual(kept(c, o), reference(c, o), `round ${round} ${JSON.stringify(o)}`);
      }
    }
  });

  test(`only the top ${MAX_NMS_CANDIDATES} scores enter the greedy pass`, () => {
    const n = MAX_NMS_CANDIDATES + 5;
    const boxes = new Float32Array(n * 4);
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      boxes.set([i * 2, 0, i * 2 + 1, 1], i * 4); // no overlaps
      scores[i] = i < 5 ? 0.001 : 0.5 + i / (4 * n);
    }
    const out = nms({ count: n, boxes, scores, classes: new Int32Array(n) }, { ...classWise, maxDetections: n });
    assert.equal(out.length, MAX_NMS_CANDIDATES);
    assert.ok(Array.from(out).every((i) => i >= 5));
  });
});
