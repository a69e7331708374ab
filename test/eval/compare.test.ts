/** Shadow comparisons of two answers for one image, on hand-computable cases. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareDetections } from '../../src/eval/index.js';

type Box = [number, number, number, number];
const det = (box: Box, classId = 0, confidence = 0.9) => ({
  classId,
  confidence,
  xMin: box[0],
  yMin: box[1],
  xMax: box[2],
  yMax: box[3],
});

const A: Box = [0, 0, 10, 10];
const B: Box = [20, 0, 30, 10];
/** IoU with A: 8×10 / (100 + 100 − 80) = 0.667. */
const A_SHIFTED: Box = [2, 0, 12, 10];
/** IoU with A: 4×10 / (100 + 100 − 40) = 0.25: never a match. */
const A_FAR: Box = [6, 0, 16, 10];

describe('compareDetections', () => {
  test('the same answer agrees fully, and two empty answers agree too', () => {
    const same = [det(A), det(B, 1)];
    const c = compareDetections(same, same);
    assert.deepEqual([c.matched, c.agreement, c.confidenceShiftSum], [2, 1, 0]);
    assert.deepEqual(
      [...c.classes],
      [
        [0, { matched: 1, activeOnly: 0, candidateOnly: 0 }],
        [1, { matched: 1, activeOnly: 0, candidateOnly: 0 }],
      ],
    );
    const empty = compareDetections([], []);
    assert.deepEqual([empty.matched, empty.agreement, empty.classes.size], [0, 1, 0]);
  });

  test('agreement is matched / the larger box count; the rest is missing or extra per class', () => {
    const c = compareDetections([det(A), det(B)], [det(A_SHIFTED), det(B, 1), det([50, 50, 60, 60], 2)]);
    // A ↔ A_SHIFTED match (IoU 0.67); B has class 0 in one answer and 1 in the other.
    assert.equal(c.matched, 1);
    assert.equal(c.agreement, 1 / 3);
    assert.deepEqual(c.classes.get(0), { matched: 1, activeOnly: 1, candidateOnly: 0 });
    assert.deepEqual(c.classes.get(1), { matched: 0, activeOnly: 0, candidateOnly: 1 });
    assert.deepEqual(c.classes.get(2), { matched: 0, activeOnly: 0, candidateOnly: 1 });
  });

  test('boxes below IoU 0.5 do not match', () => {
    const c = compareDetections([det(A)], [det(A_FAR)]);
    assert.deepEqual([c.matched, c.agreement], [0, 0]);
  });

  test('matching is greedy by IoU: the closest pair first, whatever the order of the boxes', () => {
    // Candidate box 0 overlaps A a little (0.67), box 1 exactly (1.0): A takes box 1, box 0 is extra.
    const c = compareDetections([det(A)], [det(A_SHIFTED, 0, 0.95), det(A, 0, 0.5)]);
    assert.equal(c.matched, 1);
    assert.ok(Math.abs(c.confidenceShiftSum - (0.5 - 0.9)) < 1e-12, `shift ${c.confidenceShiftSum}`);
    assert.deepEqual(c.classes.get(0), { matched: 1, activeOnly: 0, candidateOnly: 1 });
  });
});
