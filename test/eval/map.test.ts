/** COCO-style metrics on hand-computable cases. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  evaluateDetections,
  type ImageGroundTruth,
  type ImagePredictions,
  IOU_THRESHOLDS,
} from '../../src/eval/map.js';

type Box = [number, number, number, number];
const gt = (list: { box: Box; cls?: number }[]): ImageGroundTruth => ({
  boxes: Float32Array.from(list.flatMap((g) => g.box)),
  classes: Int32Array.from(list.map((g) => g.cls ?? 0)),
  count: list.length,
});
const pred = (list: { box: Box; score: number; cls?: number }[]): ImagePredictions => ({
  boxes: Float32Array.from(list.flatMap((p) => p.box)),
  scores: Float32Array.from(list.map((p) => p.score)),
  classes: Int32Array.from(list.map((p) => p.cls ?? 0)),
  count: list.length,
});
const close = (a: number, b: number, what: string): void => assert.ok(Math.abs(a - b) < 1e-9, `${what}: ${a} != ${b}`);

const A: Box = [0, 0, 10, 10];
const B: Box = [20, 0, 30, 10];
const C: Box = [40, 0, 50, 10];
const FAR: Box = [100, 100, 110, 110];

describe('evaluateDetections', () => {
  test('IoU thresholds are 0.50:0.05:0.95', () => {
    assert.deepEqual(IOU_THRESHOLDS, [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]);
  });

  test('perfect predictions score 1 everywhere', () => {
    const m = evaluateDetections(
      [
        pred([
          { box: A, score: 0.9 },
          { box: B, score: 0.8, cls: 1 },
        ]),
        pred([{ box: C, score: 0.7 }]),
      ],
      [gt([{ box: A }, { box: B, cls: 1 }]), gt([{ box: C }])],
    );
    assert.equal(m.map50, 1);
    assert.equal(m.map5095, 1);
    assert.equal(m.precision, 1);
    assert.equal(m.recall, 1);
    assert.equal(m.numImages, 2);
    assert.equal(m.numGt, 3);
    assert.deepEqual(m.perClass, [
      { classId: 0, ap50: 1, ap5095: 1, numGt: 2 },
      { classId: 1, ap50: 1, ap5095: 1, numGt: 1 },
    ]);
  });

  test('one false positive ranked above the true positive halves AP', () => {
    // precision 0, 1/2 at recall 0, 1 -> envelope 1/2 at every recall point
    const m = evaluateDetections(
      [
        pred([
          { box: FAR, score: 0.9 },
          { box: A, score: 0.8 },
        ]),
      ],
      [gt([{ box: A }])],
    );
    close(m.map50, 0.5, 'map50');
    close(m.map5095, 0.5, 'map5095');
    close(m.precision, 0.5, 'precision');
    close(m.recall, 1, 'recall');
  });

  test('a false positive ranked below the true positive costs nothing', () => {
    const m = evaluateDetections(
      [
        pred([
          { box: A, score: 0.9 },
          { box: FAR, score: 0.8 },
        ]),
      ],
      [gt([{ box: A }])],
    );
    close(m.map50, 1, 'map50');
    close(m.precision, 0.5, 'precision');
  });

  test('a missed ground truth: recall 1/2 reaches 51 of the 101 recall points', () => {
    const m = evaluateDetections([pred([{ box: A, score: 0.9 }])], [gt([{ box: A }, { box: B }])]);
    close(m.map50, 51 / 101, 'map50');
    close(m.recall, 0.5, 'recall');
    close(m.precision, 1, 'precision');
  });

  test('IoU 0.6 counts at 0.50-0.60 but not at 0.65 and above', () => {
    // [0,0,10,6] vs [0,0,10,10]: IoU = 60/100
    const m = evaluateDetections([pred([{ box: [0, 0, 10, 6], score: 0.9 }])], [gt([{ box: A }])]);
    close(m.map50, 1, 'map50');
    close(m.map5095, 3 / 10, 'map5095 (TP at .50, .55, .60 only)');
    // so at .75 it is a miss: exactly the difference between map50 and map5095 here
  });

  test('101-point interpolation computed by hand', () => {
    // ranks: TP FP TP FP TP over 3 GT -> precision 1, 1/2, 2/3, 1/2, 3/5; recall 1/3, 1/3, 2/3, 2/3, 1
    // envelope: 1, 2/3, 2/3, 3/5, 3/5; recall points 0..0.33 -> 1 (34), 0.34..0.66 -> 2/3 (33), 0.67..1 -> 3/5 (34)
    const m = evaluateDetections(
      [
        pred([
          { box: A, score: 0.9 },
          { box: FAR, score: 0.8 },
          { box: B, score: 0.7 },
          { box: [200, 200, 210, 210], score: 0.6 },
          { box: C, score: 0.5 },
        ]),
      ],
      [gt([{ box: A }, { box: B }, { box: C }])],
    );
    close(m.map50, (34 * 1 + 33 * (2 / 3) + 34 * (3 / 5)) / 101, 'map50');
    close(m.precision, 3 / 5, 'precision at 0.25');
  });

  test('the ranking spans images, not one image at a time', () => {
    // image 1: FP 0.9; image 2: TP 0.8 -> same as an FP ranked first
    const m = evaluateDetections(
      [pred([{ box: FAR, score: 0.9 }]), pred([{ box: A, score: 0.8 }])],
      [gt([]), gt([{ box: A }])],
    );
    close(m.map50, 0.5, 'map50');
  });

  test('greedy matching: each prediction takes the best unmatched GT of its class', () => {
    // G1 = A, G2 = [0,0,10,15] overlaps it. P1 fits G1 best; P2 also prefers G1, which is taken, and falls
    // back to G2 at IoU 0.6 -> both TP at .5; at .65 and up only P1 is a TP.
    const p = pred([
      { box: A, score: 0.9 },
      { box: [0, 0, 10, 9], score: 0.8 },
    ]);
    const g = gt([{ box: A }, { box: [0, 0, 10, 15] }]);
    const m = evaluateDetections([p], [g]);
    close(m.map50, 1, 'map50');
    // IoU(P2, G2) = 90/150 = 0.6: TP at .50, .55, .60; at the other 7 thresholds AP = 51/101
    close(m.map5095, (3 * 1 + 7 * (51 / 101)) / 10, 'map5095');
  });

  test('a prediction of the wrong class does not match', () => {
    const m = evaluateDetections([pred([{ box: A, score: 0.9, cls: 1 }])], [gt([{ box: A, cls: 0 }])]);
    assert.equal(m.map50, 0);
    assert.equal(m.precision, 0);
    assert.deepEqual(
      m.perClass.map((c) => c.classId),
      [0],
      'class 1 has no GT: left out',
    );
  });

  test('classes with GT but no predictions count as 0; classes without GT are excluded', () => {
    const m = evaluateDetections(
      [
        pred([
          { box: A, score: 0.9 },
          { box: C, score: 0.95, cls: 7 },
        ]),
      ],
      [gt([{ box: A }, { box: B, cls: 1 }])],
    );
    close(m.map50, 0.5, 'mean of 1 and 0');
    assert.deepEqual(
      m.perClass.map((c) => [c.classId, c.ap50]),
      [
        [0, 1],
        [1, 0],
      ],
    );
    close(m.precision, 0.5, 'class 7 prediction is a false positive');
    close(m.recall, 0.5, 'recall');
  });

  test('precision and recall use only predictions at or above the confidence', () => {
    const m = evaluateDetections(
      [
        pred([
          { box: A, score: 0.9 },
          { box: B, score: 0.1 },
        ]),
      ],
      [gt([{ box: A }, { box: B }])],
      { confThreshold: 0.5 },
    );
    close(m.precision, 1, 'precision');
    close(m.recall, 0.5, 'recall');
    close(m.map50, 1, 'mAP still counts every prediction');
  });

  test('no ground truth at all gives zeros; mismatched lengths are refused', () => {
    const m = evaluateDetections([pred([])], [gt([])]);
    assert.equal(m.map50, 0);
    assert.equal(m.numGt, 0);
    assert.throws(() => evaluateDetections([pred([])], []), /one ground truth per image/);
  });

  test('128 images × 300 predictions evaluate quickly', () => {
    let seed = 1;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const box = (): Box => {
      const x = rnd() * 600;
      const y = rnd() * 600;
      return [x, y, x + 20 + rnd() * 100, y + 20 + rnd() * 100];
    };
    const gts = Array.from({ length: 128 }, () =>
      gt(Array.from({ length: 8 }, () => ({ box: box(), cls: Math.floor(rnd() * 80) }))),
    );
    const preds = gts.map((g) =>
      pred(
        Array.from({ length: 300 }, (_, k) =>
          k < g.count
            ? { box: Array.from(g.boxes.subarray(k * 4, k * 4 + 4)) as Box, score: 0.9, cls: g.classes[k] }
            : { box: box(), score: rnd() * 0.8, cls: Math.floor(rnd() * 80) },
        ),
      ),
    );
    const started = performance.now();
    const m = evaluateDetections(preds, gts);
    const ms = performance.now() - started;
    close(m.map50, 1, 'every GT has a prediction scored above all noise');
    assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms`);
  });
});
