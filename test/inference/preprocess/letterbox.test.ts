import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeLetterbox, mapBoxesToSource, roundHalfEven } from '../../../src/inference/preprocess/index.js';
import type { LetterboxGeometry } from '../../../src/inference/types.js';

function assertSums(g: LetterboxGeometry): void {
  assert.equal(g.padLeft + g.resizedWidth + g.padRight, g.dstWidth);
  assert.equal(g.padTop + g.resizedHeight + g.padBottom, g.dstHeight);
  for (const v of [g.padLeft, g.padTop, g.padRight, g.padBottom]) assert.ok(Number.isInteger(v) && v >= 0);
  assert.ok(g.resizedWidth >= 1 && g.resizedHeight >= 1);
}

test('roundHalfEven matches Python round()', () => {
  assert.deepEqual([0.5, 1.5, 2.5, 3.5, 2.4, 2.6, 213.12].map(roundHalfEven), [0, 2, 2, 4, 2, 3, 213]);
});

test('center: bus.jpg 810x1080 → 640 matches Ultralytics (480x640, pad 80/80)', () => {
  const g = computeLetterbox(810, 1080, 640, 640, 'center');
  assert.deepEqual(g, {
    srcWidth: 810,
    srcHeight: 1080,
    dstWidth: 640,
    dstHeight: 640,
    resizedWidth: 480,
    resizedHeight: 640,
    padLeft: 80,
    padTop: 0,
    padRight: 80,
    padBottom: 0,
  });
});

test('center: zidane.jpg 1280x720 → 640 gives 640x360, pad 140/140', () => {
  const g = computeLetterbox(1280, 720, 640, 640, 'center');
  assert.equal(g.resizedWidth, 640);
  assert.equal(g.resizedHeight, 360);
  assert.equal(g.padTop, 140);
  assert.equal(g.padBottom, 140);
});

test('center: odd padding puts the extra pixel at bottom/right (Ultralytics ±0.1)', () => {
  const g = computeLetterbox(1000, 333, 640, 640, 'center');
  assert.equal(g.resizedHeight, 213); // round(213.12)
  assert.equal(g.padTop, 213); // round(213.5 - 0.1)
  assert.equal(g.padBottom, 214); // round(213.5 + 0.1)
  assertSums(g);
});

test('top-left: YOLOX floors sizes and pads right/bottom only', () => {
  const g = computeLetterbox(810, 1080, 416, 416, 'top-left');
  assert.equal(g.resizedWidth, Math.floor(810 * (416 / 1080))); // same float as Python int(w * r)
  assert.equal(g.resizedHeight, 416);
  assert.equal(g.padLeft, 0);
  assert.equal(g.padTop, 0);
  assertSums(g);
  const z = computeLetterbox(1280, 720, 416, 416, 'top-left');
  assert.deepEqual([z.resizedWidth, z.resizedHeight, z.padRight, z.padBottom], [416, 234, 0, 182]);
});

test('upscales small images and keeps extreme aspect ratios at least 1 px', () => {
  const up = computeLetterbox(20, 10, 640, 640, 'center');
  assert.deepEqual([up.resizedWidth, up.resizedHeight, up.padTop, up.padBottom], [640, 320, 160, 160]);
  for (const placement of ['center', 'top-left'] as const) {
    const thin = computeLetterbox(1, 10000, 640, 640, placement);
    assert.equal(thin.resizedWidth, 1);
    assertSums(thin);
  }
});

test('pads always sum exactly and center pads are symmetric within 1 px (sweep)', () => {
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return 1 + (seed % n);
  };
  for (let i = 0; i < 5000; i++) {
    const [sw, sh, dw, dh] = [rand(5000), rand(5000), rand(1280), rand(1280)];
    const c = computeLetterbox(sw, sh, dw, dh, 'center');
    assertSums(c);
    assert.ok(Math.abs(c.padLeft - c.padRight) <= 1 && Math.abs(c.padTop - c.padBottom) <= 1);
    // One side fills the input (up to rounding of the 1-px minimum).
    assert.ok(c.resizedWidth === dw || c.resizedHeight === dh, `${sw}x${sh}→${dw}x${dh}`);
    const t = computeLetterbox(sw, sh, dw, dh, 'top-left');
    assertSums(t);
    assert.equal(t.padLeft + t.padTop, 0);
  }
});

test('rejects non-positive or fractional sizes', () => {
  assert.throws(() => computeLetterbox(0, 10, 640, 640, 'center'), RangeError);
  assert.throws(() => computeLetterbox(10, 10, 640.5, 640, 'center'), RangeError);
});

test('mapBoxesToSource inverts the letterbox (round trip) and clips to the image', () => {
  for (const placement of ['center', 'top-left'] as const) {
    const g = computeLetterbox(810, 1080, 640, 640, placement);
    const src = [36, 231, 798, 775, 0, 0, 810, 1080, 51.5, 398.25, 242, 904];
    const boxes = new Float32Array(src.length + 4);
    for (let i = 0; i < src.length; i += 2) {
      boxes[i] = (src[i] * g.resizedWidth) / g.srcWidth + g.padLeft;
      boxes[i + 1] = (src[i + 1] * g.resizedHeight) / g.srcHeight + g.padTop;
    }
    boxes.set([-50, -50, 700, 700], src.length); // spills into and past the padding
    mapBoxesToSource(boxes, src.length / 4 + 1, g);
    for (let i = 0; i < src.length; i++) assert.ok(Math.abs(boxes[i] - src[i]) < 1e-3, `${placement} [${i}]`);
    const last = Array.from(boxes.subarray(src.length));
    assert.equal(last[0], 0);
    assert.equal(last[1], 0);
    assert.equal(last[2], 810);
    assert.equal(last[3], 1080);
  }
});

test('mapBoxesToSource touches only `count` boxes', () => {
  const g = computeLetterbox(1280, 720, 640, 640, 'center');
  const boxes = new Float32Array([0, 140, 640, 500, 1, 2, 3, 4]);
  mapBoxesToSource(boxes, 1, g);
  assert.deepEqual(Array.from(boxes), [0, 0, 1280, 720, 1, 2, 3, 4]);
  assert.throws(() => mapBoxesToSource(boxes, 3, g), RangeError);
});
