/**
 * JPEG decoding at 1/2, 1/4 or 1/8 size in libjpeg-turbo's IDCT: when the worker may use it, what it
 * yields, and that the tensor it leads to is the displayed image properly shrunk, in every orientation.
 * Hostile progressive files (thousands of scans) are refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { SightlineError } from '../../../src/errors.js';
import { DCT_SCALING_AVAILABLE, dctDenominator, JpegDecoder } from '../../../src/inference/preprocess/jpeg-turbo.js';
import { MAX_PROGRESSIVE_SCANS } from '../../../src/inference/preprocess/jpeg-header.js';
import { prepareTensor, readJpegHeader, type ImageSource } from '../../../src/inference/preprocess/index.js';
import { imagePath, requireShared } from '../../support/shared.js';
import { LIMITS, ULTRA, YOLOX } from './fixtures.js';

const size = (width: number, height: number) => ({ width, height });

test('the decoder scales on Linux (the binding ships libturbojpeg.so.0 there)', () => {
  if (process.platform === 'linux') assert.equal(DCT_SCALING_AVAILABLE, true);
  assert.equal(new JpegDecoder().scales, DCT_SCALING_AVAILABLE);
});

test('dctDenominator: the largest power of two that leaves at least the resized size on both sides', () => {
  const cases: [[number, number], [number, number], number][] = [
    [[810, 1080], [312, 416], 2], // bus.jpg for a 416 model
    [[810, 1080], [480, 640], 1], // ... for a 640 model: more than half the image
    [[1920, 1080], [640, 360], 2], // 1/4 would leave 480x270
    [[4032, 3024], [640, 480], 4],
    [[4032, 3024], [416, 312], 8],
    [[640, 480], [320, 240], 2], // exactly half
    [[641, 480], [320, 240], 2], // ceil(641/2) = 321
    [[639, 480], [320, 240], 2], // ceil(639/2) = 320: still fits
    [[638, 480], [320, 240], 1], // 319 would not
    [[100, 100], [640, 640], 1], // upscale
  ];
  for (const [shown, resized, want] of cases) {
    assert.equal(dctDenominator(size(...shown), size(...resized)), want, `${shown.join('x')} → ${resized.join('x')}`);
  }
});

test(
  'a 1/2 decode is the full decode averaged 2x2, within a few grey levels',
  { skip: !DCT_SCALING_AVAILABLE },
  (t) => {
    if (!requireShared(t, 'images', 'bus.jpg')) return;
    const bytes = new Uint8Array(readFileSync(imagePath('bus.jpg')));
    const h = readJpegHeader(bytes)!;
    const src: ImageSource = { kind: 'jpeg', bytes, ...size(h.width, h.height), orientation: 1, dctScaling: true };
    const d = new JpegDecoder();
    const full = Uint8Array.from(d.decode(src, 1).pixels);
    const half = d.decode(src, 2);
    assert.deepEqual([half.width, half.height], [405, 540]);
    let diff = 0;
    for (let y = 0; y < half.height; y++) {
      for (let x = 0; x < half.width; x++) {
        for (let c = 0; c < 3; c++) {
          const at = (xx: number, yy: number) => full[(yy * h.width + xx) * 3 + c]!;
          const box = (at(2 * x, 2 * y) + at(2 * x + 1, 2 * y) + at(2 * x, 2 * y + 1) + at(2 * x + 1, 2 * y + 1)) / 4;
          diff += Math.abs(half.pixels[(y * half.width + x) * 3 + c]! - box);
        }
      }
    }
    const mean = diff / (half.width * half.height * 3);
    assert.ok(mean < 3, `mean difference ${mean.toFixed(2)} grey levels`);
  },
);

test(
  'a scaled decode shrinks closer to a filtered resize than the full decode does, in every orientation',
  { skip: !DCT_SCALING_AVAILABLE },
  async (t) => {
    if (!requireShared(t, 'images', 'bus.jpg')) return;
    // A 1600x1200 photo for a 416 model: 1/2 in the IDCT (1/4 would leave 400 px), then 1.92:1 bilinear;
    // the full decode goes 3.85:1 bilinear, which skips pixels (OpenCV's INTER_LINEAR does not filter).
    const base = await sharp(imagePath('bus.jpg')).rotate(90).resize(1600, 1200, { fit: 'fill' }).jpeg().toBuffer();
    for (const orientation of [1, 3, 6, 8]) {
      const bytes = new Uint8Array(await sharp(base).withMetadata({ orientation }).jpeg({ quality: 92 }).toBuffer());
      const target = { width: 416, height: 416, spec: YOLOX };
      const scaled = await prepareTensor(bytes, target, LIMITS, { applyIccProfile: false });
      const full = await prepareTensor(bytes, target, LIMITS, { applyIccProfile: false, jpegDctScaling: false });
      assert.deepEqual(scaled.geometry, full.geometry, `orientation ${orientation}`);
      assert.equal(scaled.decoder, 'libjpeg-turbo');
      // The displayed image, resized with a windowed-sinc filter: what either path approximates.
      const g = scaled.geometry;
      const ref = await sharp(bytes)
        .autoOrient()
        .resize(g.resizedWidth, g.resizedHeight, { fit: 'fill', kernel: 'lanczos3' })
        .raw()
        .toBuffer();
      const fromRef = (tensor: Float32Array): number => {
        let sum = 0;
        for (let y = 0; y < g.resizedHeight; y++) {
          for (let x = 0; x < g.resizedWidth; x++) {
            for (let c = 0; c < 3; c++) {
              // YOLOX tensors are BGR planes of raw 0-255 values.
              const v = tensor[(2 - c) * 416 * 416 + (y + g.padTop) * 416 + x + g.padLeft]!;
              sum += Math.abs(v - ref[(y * g.resizedWidth + x) * 3 + c]!);
            }
          }
        }
        return sum / (g.resizedWidth * g.resizedHeight * 3);
      };
      const [s, f] = [fromRef(scaled.tensor), fromRef(full.tensor)];
      assert.ok(s < 6 && s < f, `orientation ${orientation}: ${s.toFixed(2)} (scaled) vs ${f.toFixed(2)} (full)`);
    }
  },
);

test('a model input above half the image decodes at full size: the same tensor either way', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const bytes = new Uint8Array(readFileSync(imagePath('bus.jpg')));
  const target = { width: 640, height: 640, spec: ULTRA };
  const a = await prepareTensor(bytes, target, LIMITS, { applyIccProfile: false });
  const b = await prepareTensor(bytes, target, LIMITS, { applyIccProfile: false, jpegDctScaling: false });
  assert.deepEqual(Array.from(a.tensor), Array.from(b.tensor));
});

/**
 * A progressive JPEG whose first scan (the DC scan) is repeated `copies` times before the rest: each
 * copy is one more scan the decoder must process.
 */
async function manyScans(copies: number): Promise<Uint8Array> {
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } })
    .jpeg({ progressive: true })
    .toBuffer();
  // Find the first SOS marker and the next marker after its entropy-coded data.
  let sos = -1;
  for (let i = 2; i < jpeg.length - 1;) {
    if (jpeg[i] !== 0xff) throw new Error('lost the marker structure');
    const marker = jpeg[i + 1]!;
    const len = jpeg.readUInt16BE(i + 2);
    if (marker === 0xda) {
      sos = i;
      break;
    }
    i += 2 + len;
  }
  assert.ok(sos > 0, 'no SOS marker');
  let end = sos + 2 + jpeg.readUInt16BE(sos + 2);
  while (!(jpeg[end] === 0xff && jpeg[end + 1] !== 0 && !(jpeg[end + 1]! >= 0xd0 && jpeg[end + 1]! <= 0xd7))) end++;
  const scan = jpeg.subarray(sos, end);
  return new Uint8Array(
    Buffer.concat([jpeg.subarray(0, sos), ...Array.from({ length: copies }, () => scan), jpeg.subarray(end)]),
  );
}

test(`a progressive JPEG with more than ${MAX_PROGRESSIVE_SCANS} scans is refused before any decoder, naming the limit`, async () => {
  const bomb = await manyScans(MAX_PROGRESSIVE_SCANS + 100);
  const target = { width: 64, height: 64, spec: ULTRA };
  // libjpeg-turbo's path, and sharp's (libvips sets no limit of its own).
  for (const decoder of ['auto', 'sharp'] as const) {
    const err = await prepareTensor(bomb, target, LIMITS, { applyIccProfile: false, decoder }).then(
      () => null,
      (e: unknown) => e,
    );
    assert.ok(err instanceof SightlineError, `${decoder}: ${String(err)}`);
    assert.equal(err.code, 'INVALID_INPUT');
    assert.match(err.message, new RegExp(`more than ${MAX_PROGRESSIVE_SCANS} scans`));
  }
  // A few repeated scans are only odd: still decoded.
  const odd = await manyScans(3);
  const ok = await prepareTensor(odd, target, LIMITS, { applyIccProfile: false });
  assert.equal(ok.tensor.length, 3 * 64 * 64);
});
