import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toTensor } from '../../../src/inference/preprocess/index.js';
import type { LetterboxSpec } from '../../../src/inference/types.js';
import { ULTRA, YOLOX } from './fixtures.js';

// 2x2 image, HWC RGB: pixel k has channels (10k+1, 10k+2, 10k+3) for k = 0..3.
const W = 2;
const H = 2;
const PIXELS = Uint8Array.from([1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33]);
const f = Math.fround;

/** Equal within float32 rounding (the multiply-add may differ from the formula by an ulp). */
function assertClose(actual: Float32Array, expected: number[]): void {
  assert.equal(actual.length, expected.length);
  for (let i = 0; i < expected.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= 1e-6 * Math.max(1, Math.abs(expected[i])), `[${i}] ${actual[i]} vs ${expected[i]}`);
  }
}

test('toTensor RGB /255 (Ultralytics): planar R, G, B', () => {
  const t = toTensor(PIXELS, W, H, ULTRA);
  assertClose(t, [1, 11, 21, 31, 2, 12, 22, 32, 3, 13, 23, 33].map((v) => v / 255));
});

test('toTensor BGR raw (YOLOX): planar B, G, R with 0-255 values', () => {
  const t = toTensor(PIXELS, W, H, YOLOX);
  assert.deepEqual(Array.from(t), [3, 13, 23, 33, 2, 12, 22, 32, 1, 11, 21, 31]);
});

test('toTensor applies mean/std per tensor channel (NanoDet BGR)', () => {
  const spec: LetterboxSpec = {
    placement: 'center',
    padValue: 0,
    channelOrder: 'bgr',
    scale: 1,
    mean: [103.53, 116.28, 123.675],
    std: [57.375, 57.12, 58.395],
  };
  const t = toTensor(PIXELS, W, H, spec);
  const b = [3, 13, 23, 33].map((v) => (v - 103.53) / 57.375);
  const g = [2, 12, 22, 32].map((v) => (v - 116.28) / 57.12);
  const r = [1, 11, 21, 31].map((v) => (v - 123.675) / 58.395);
  assertClose(t, [...b, ...g, ...r]);
});

test('toTensor reuses `out` of the right size and replaces one of the wrong size', () => {
  const out = new Float32Array(12).fill(-1);
  assert.equal(toTensor(PIXELS, W, H, ULTRA, out), out);
  assert.equal(out[0], f(1 * (1 / 255)));
  const wrong = new Float32Array(11);
  const t = toTensor(PIXELS, W, H, ULTRA, wrong);
  assert.notEqual(t, wrong);
  assert.equal(t.length, 12);
});

test('toTensor refuses a pixel buffer that does not match the size', () => {
  assert.throws(() => toTensor(PIXELS, 3, 2, ULTRA), RangeError);
  assert.throws(() => toTensor(PIXELS.subarray(1), W, H, ULTRA), RangeError);
});

test('toTensor 640x640 writes into the buffer it is given (no allocation per request)', () => {
  const px = new Uint8Array(640 * 640 * 3).map((_, i) => i & 255);
  const out = new Float32Array(640 * 640 * 3);
  // Its speed is measured by `npm run bench` (toTensor p50), not here.
  assert.equal(toTensor(px, 640, 640, ULTRA, out), out);
  assert.equal(out[1], f(3 * (1 / 255))); // plane R, pixel 1 = byte 3
  assert.notEqual(toTensor(px, 640, 640, ULTRA, new Float32Array(3)), out, 'a buffer of the wrong size is not reused');
});
