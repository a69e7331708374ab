/**
 * Embedded ICC profiles. Off by default, as OpenCV reads training images: the profile is ignored and a
 * JPEG goes to libjpeg-turbo. On: sharp converts to sRGB as the image loads, and the resize is the
 * same as for every other image; the padding is never touched by a transform.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { computeLetterbox, letterboxToTensor } from '../../../src/inference/preprocess/index.js';
import { LIMITS, ULTRA, prepareImage } from './fixtures.js';

const W = 900;
const H = 600;

/** Saturated bands and gradients (where Display P3 and sRGB values differ most), as a P3-tagged JPEG. */
async function p3Photo(): Promise<Buffer> {
  const raw = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const band = Math.floor(x / (W / 6));
      const v = Math.round((255 * y) / (H - 1));
      const c = [
        [v, 0, 0],
        [0, v, 0],
        [0, 0, v],
        [v, v, 0],
        [0, v, v],
        [255 - v, v >> 1, (x * 7) & 255],
      ][band]!;
      raw[i] = c[0]!;
      raw[i + 1] = c[1]!;
      raw[i + 2] = c[2]!;
    }
  }
  // withIccProfile converts the sRGB pixels into P3 values and embeds the P3 profile.
  return sharp(raw, { raw: { width: W, height: H, channels: 3 } })
    .withIccProfile('p3')
    .jpeg({ quality: 95 })
    .toBuffer();
}

const meanAbsDiff = (a: Uint8Array, b: Uint8Array): number => {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};

test('a Display P3 photo: profile ignored by default (libjpeg-turbo), converted at load when asked; the padding stays exactly 114', async () => {
  const bytes = await p3Photo();
  const target = { width: 640, height: 640, spec: ULTRA };
  const g = computeLetterbox(W, H, 640, 640, 'center');
  const got = await prepareImage(bytes, target, LIMITS, { applyIccProfile: true });
  const ignored = await prepareImage(bytes, target, LIMITS);
  assert.equal(got.decoder, 'sharp');
  assert.equal(ignored.decoder, 'libjpeg-turbo');

  // libvips' colour-managed decode (profile → sRGB as it loads), through the same resize and padding.
  const managed = await sharp(bytes).toColourspace('srgb').raw().toBuffer();
  const spec = { ...ULTRA, channelOrder: 'rgb' as const, scale: 1, mean: [0, 0, 0] as const, std: [1, 1, 1] as const };
  const t = new Float32Array(3 * 640 * 640);
  letterboxToTensor({ pixels: managed, width: W, height: H, orientation: 1 }, g, spec, t);
  const reference = new Uint8Array(640 * 640 * 3);
  for (let i = 0; i < 640 * 640; i++)
    for (let c = 0; c < 3; c++) reference[i * 3 + c] = Math.round(t[c * 640 * 640 + i]!);

  const vsReference = meanAbsDiff(got.pixels, reference);
  const vsIgnored = meanAbsDiff(got.pixels, ignored.pixels);
  assert.ok(vsReference < 0.01, `mean difference from libvips' colour-managed decode is ${vsReference.toFixed(3)}`);
  // The transform really ran: P3 values read as sRGB are far off on saturated colours.
  assert.ok(vsIgnored > 3, `profile applied vs ignored differ by only ${vsIgnored.toFixed(3)}`);

  for (const img of [got, ignored]) {
    for (let y = 0; y < 640; y++) {
      const inside = y >= g.padTop && y < g.padTop + g.resizedHeight;
      for (let x = 0; x < 640; x++) {
        if (inside && x >= g.padLeft && x < g.padLeft + g.resizedWidth) continue;
        const i = (y * 640 + x) * 3;
        if (img.pixels[i] !== 114 || img.pixels[i + 1] !== 114 || img.pixels[i + 2] !== 114) {
          assert.fail(`pad pixel (${x}, ${y}) is ${img.pixels.subarray(i, i + 3).join(',')}, not 114`);
        }
      }
    }
  }
});
