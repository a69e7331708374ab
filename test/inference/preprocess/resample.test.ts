/**
 * letterboxToTensor: orientation, OpenCV INTER_LINEAR resize, padding, channel order and normalisation
 * in one pass, checked against straightforward reference computations; sampleLetterboxed's grid.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import {
  computeLetterbox,
  letterboxToTensor,
  sampleLetterboxed,
  type Orientation,
  type RgbImage,
} from '../../../src/inference/preprocess/index.js';
import { RETAINED_PIXEL_BYTES, TensorArena } from '../../../src/inference/preprocess/arena.js';
import type { LetterboxSpec } from '../../../src/inference/types.js';
import { ULTRA, YOLOX } from './fixtures.js';

const RAW: LetterboxSpec = {
  placement: 'center',
  padValue: 114,
  channelOrder: 'rgb',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
};

/** A w x h RGB image whose pixel (x, y) is (x*7+y) & 255, (x*3+y*5) & 255, (x+y*11) & 255. */
function pattern(w: number, h: number): Uint8Array {
  const px = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) px.set([(x * 7 + y) & 255, (x * 3 + y * 5) & 255, (x + y * 11) & 255], (y * w + x) * 3);
  }
  return px;
}

const tensorFor = (
  img: RgbImage,
  dst: number,
  spec: LetterboxSpec,
): { t: Float32Array; g: ReturnType<typeof computeLetterbox> } => {
  const shown = img.orientation >= 5 ? [img.height, img.width] : [img.width, img.height];
  const g = computeLetterbox(shown[0]!, shown[1]!, dst, dst, spec.placement);
  const t = new Float32Array(3 * dst * dst);
  letterboxToTensor(img, g, spec, t);
  return { t, g };
};

/** OpenCV's INTER_LINEAR written out the plain way: one output pixel, one channel. */
function cvLinear(
  px: Uint8Array,
  w: number,
  h: number,
  c: number,
  x: number,
  y: number,
  dw: number,
  dh: number,
): number {
  const tap = (o: number, src: number, dst: number): [number, number, number] => {
    let f = (o + 0.5) * (src / dst) - 0.5;
    let i = Math.floor(f);
    if (i < 0) {
      i = 0;
      f = 0;
    }
    if (i >= src - 1) {
      i = src - 1;
      f = i;
    }
    return [i, Math.min(i + 1, src - 1), f - i];
  };
  const [x0, x1, fx] = tap(x, w, dw);
  const [y0, y1, fy] = tap(y, h, dh);
  const at = (xx: number, yy: number) => px[(yy * w + xx) * 3 + c]!;
  return (at(x0, y0) * (1 - fx) + at(x1, y0) * fx) * (1 - fy) + (at(x0, y1) * (1 - fx) + at(x1, y1) * fx) * fy;
}

test('same size: an exact copy, planar, with the spec normalisation (RGB /255 and BGR raw)', () => {
  const px = pattern(4, 4);
  const img: RgbImage = { pixels: px, width: 4, height: 4, orientation: 1 };
  const { t } = tensorFor(img, 4, ULTRA);
  for (let i = 0; i < 16; i++)
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(t[c * 16 + i]! - px[i * 3 + c]! / 255) < 1e-6);
  const { t: b } = tensorFor(img, 4, YOLOX);
  for (let i = 0; i < 16; i++) for (let c = 0; c < 3; c++) assert.equal(b[c * 16 + i], px[i * 3 + (2 - c)]);
});

test('mean and std apply per tensor channel (NanoDet: BGR, (v - mean) / std)', () => {
  const spec: LetterboxSpec = {
    placement: 'center',
    padValue: 0,
    channelOrder: 'bgr',
    scale: 1,
    mean: [103.53, 116.28, 123.675],
    std: [57.375, 57.12, 58.395],
  };
  const px = pattern(2, 2);
  const { t } = tensorFor({ pixels: px, width: 2, height: 2, orientation: 1 }, 2, spec);
  for (let i = 0; i < 4; i++) {
    for (let c = 0; c < 3; c++) {
      const want = (px[i * 3 + (2 - c)]! - spec.mean[c]) / spec.std[c];
      assert.ok(Math.abs(t[c * 4 + i]! - want) < 1e-5, `[${c}, ${i}] ${t[c * 4 + i]} vs ${want}`);
    }
  }
});

test('downscale and upscale follow OpenCV INTER_LINEAR; padding is the pad value on every plane', () => {
  for (const [w, h, dst] of [
    [97, 61, 40],
    [30, 50, 64],
    [640, 480, 416],
    [33, 33, 100],
  ] as const) {
    const px = pattern(w, h);
    const { t, g } = tensorFor({ pixels: px, width: w, height: h, orientation: 1 }, dst, RAW);
    const n = dst * dst;
    let worst = 0;
    for (let y = 0; y < dst; y++) {
      for (let x = 0; x < dst; x++) {
        const rx = x - g.padLeft;
        const ry = y - g.padTop;
        const inside = rx >= 0 && ry >= 0 && rx < g.resizedWidth && ry < g.resizedHeight;
        for (let c = 0; c < 3; c++) {
          const want = inside ? cvLinear(px, w, h, c, rx, ry, g.resizedWidth, g.resizedHeight) : 114;
          worst = Math.max(worst, Math.abs(t[c * n + y * dst + x]! - want));
        }
      }
    }
    assert.ok(worst < 1e-3, `${w}x${h} → ${dst}: worst difference ${worst}`);
  }
});

test('every EXIF orientation reads the stored pixels the way sharp autoOrient displays them', async () => {
  const w = 12;
  const h = 7;
  const stored = pattern(w, h);
  for (let o = 1; o <= 8; o++) {
    // A lossless TIFF carrying the tag: sharp's autoOrient is the reference for what it means.
    const tagged = await sharp(stored, { raw: { width: w, height: h, channels: 3 } })
      .withMetadata({ orientation: o })
      .tiff({ compression: 'none' })
      .toBuffer();
    assert.equal((await sharp(tagged).metadata()).orientation, o);
    const { data, info } = await sharp(tagged, { autoOrient: true }).raw().toBuffer({ resolveWithObject: true });
    const { t, g } = tensorFor(
      { pixels: stored, width: w, height: h, orientation: o as Orientation },
      Math.max(w, h),
      RAW,
    );
    assert.deepEqual([g.srcWidth, g.srcHeight], [info.width, info.height], `orientation ${o}: size`);
    assert.deepEqual([g.resizedWidth, g.resizedHeight], [info.width, info.height], `orientation ${o}: no resize`);
    const n = g.dstWidth * g.dstHeight;
    for (let y = 0; y < info.height; y++) {
      for (let x = 0; x < info.width; x++) {
        for (let c = 0; c < 3; c++) {
          const got = t[c * n + (y + g.padTop) * g.dstWidth + x + g.padLeft];
          assert.equal(got, data[(y * info.width + x) * 3 + c], `orientation ${o}, pixel (${x}, ${y}), channel ${c}`);
        }
      }
    }
  }
});

test('refuses a tensor or a geometry that does not fit the image', () => {
  const img: RgbImage = { pixels: pattern(4, 2), width: 4, height: 2, orientation: 1 };
  const g = computeLetterbox(4, 2, 8, 8, 'center');
  assert.throws(() => letterboxToTensor(img, g, RAW, new Float32Array(10)), /tensor holds 10 floats/);
  assert.throws(
    () => letterboxToTensor({ ...img, orientation: 6 }, g, RAW, new Float32Array(192)),
    /geometry is for 4x2/,
  );
  assert.throws(
    () => letterboxToTensor({ ...img, pixels: new Uint8Array(5) }, g, RAW, new Float32Array(192)),
    /expected 24 bytes/,
  );
});

test('sampleLetterboxed: every step-th pixel of the image region, half a step in, back as RGB bytes', () => {
  const w = 50;
  const h = 30;
  const px = pattern(w, h);
  for (const spec of [ULTRA, YOLOX]) {
    const { t, g } = tensorFor({ pixels: px, width: w, height: h, orientation: 1 }, 50, spec);
    const s = sampleLetterboxed(t, g, spec, 4);
    assert.deepEqual([s.width, s.height], [Math.ceil((50 - 2) / 4), Math.ceil((30 - 2) / 4)]);
    for (let j = 0; j < s.height; j++) {
      for (let i = 0; i < s.width; i++) {
        const x = 2 + i * 4;
        const y = 2 + j * 4;
        assert.deepEqual(
          [...s.pixels.subarray((j * s.width + i) * 3, (j * s.width + i) * 3 + 3)],
          [...px.subarray((y * w + x) * 3, (y * w + x) * 3 + 3)],
          `${spec.channelOrder} (${x}, ${y})`,
        );
      }
    }
  }
});

test('the WebAssembly rows give the JavaScript rows’ tensor, in every orientation, size and spec', () => {
  const arena = new TensorArena();
  const imagenet: LetterboxSpec = { ...ULTRA, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
  const specs = [RAW, ULTRA, YOLOX, imagenet];
  for (const [w, h, dst] of [
    [97, 61, 40],
    [30, 50, 64],
    [641, 479, 416],
    [33, 33, 100],
    [1, 1, 8],
  ] as const) {
    const stored = pattern(w, h);
    for (let o = 1; o <= 8; o++) {
      for (const spec of specs) {
        const shown = o >= 5 ? [h, w] : [w, h];
        const g = computeLetterbox(shown[0]!, shown[1]!, dst, dst, spec.placement);
        const js = new Float32Array(3 * dst * dst);
        letterboxToTensor({ pixels: stored, width: w, height: h, orientation: o as Orientation }, g, spec, js);
        // The same image laid out in the arena, as the worker does: the rows then run in the kernel.
        const views = arena.reserve(js.length, stored.length);
        views.pixels!.set(stored);
        // The spare bytes after the last pixel hold garbage: the kernel must never let them count.
        views.pixels!.fill(255, stored.length);
        const img = { pixels: views.pixels!, width: w, height: h, orientation: o as Orientation };
        letterboxToTensor(img, g, spec, views.tensor, arena);
        let worst = 0;
        for (let i = 0; i < js.length; i++) worst = Math.max(worst, Math.abs(js[i]! - views.tensor[i]!));
        assert.ok(worst < 1e-4, `${w}x${h} → ${dst}, orientation ${o}: worst difference ${worst}`);
      }
    }
  }
});

test('the arena grows for a larger image and keeps pixels over its limit out', () => {
  const arena = new TensorArena();
  const small = arena.reserve(3 * 64 * 64, 1000);
  assert.ok(small.pixels && arena.holds(small.pixels) && arena.holds(small.tensor));
  const big = arena.reserve(3 * 640 * 640, 4032 * 3024 * 3);
  assert.equal(big.pixels!.length, 4032 * 3024 * 3 + 4);
  assert.ok(arena.holds(big.tensor) && !arena.holds(small.tensor), 'growing detaches earlier views');
  const huge = arena.reserve(3 * 640 * 640, RETAINED_PIXEL_BYTES + 3);
  assert.equal(huge.pixels, null, 'a photo over the limit gets no room in the arena');
  assert.ok(arena.holds(huge.tensor));
});
