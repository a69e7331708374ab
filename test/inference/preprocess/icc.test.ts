/**
 * Embedded ICC profiles: where prepareImage converts them (iccPlan), and that converting after the
 * resize gives what libvips' convert-at-load gives, with the padding untouched by any transform.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { computeLetterbox, padToLetterbox, prepareImage } from '../../../src/inference/preprocess/index.js';
import { iccPlan } from '../../../src/inference/preprocess/decode.js';
import { LIMITS, ULTRA } from './fixtures.js';

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
  return sharp(raw, { raw: { width: W, height: H, channels: 3 } }).withIccProfile('p3').jpeg({ quality: 95 }).toBuffer();
}

const meanAbsDiff = (a: Uint8Array, b: Uint8Array): number => {
  assert.equal(a.length, b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i]! - b[i]!);
  return s / a.length;
};

test('iccPlan: after the resize only for 8-bit, 3-channel RGB with a profile', () => {
  const rgb = { hasProfile: true, space: 'srgb', depth: 'uchar', channels: 3, hasAlpha: false } as const;
  assert.equal(iccPlan(rgb, true), 'after-resize');
  assert.equal(iccPlan(rgb, false), 'none');
  assert.equal(iccPlan({ ...rgb, hasProfile: false }, true), 'none');
  assert.equal(iccPlan({ ...rgb, space: 'cmyk', channels: 4 }, true), 'on-load');
  assert.equal(iccPlan({ ...rgb, space: 'b-w', channels: 1 }, true), 'on-load');
  assert.equal(iccPlan({ ...rgb, depth: 'ushort', space: 'rgb16' }, true), 'on-load');
  assert.equal(iccPlan({ ...rgb, channels: 4, hasAlpha: true }, true), 'on-load');
});

test('a Display P3 photo: converted after the resize ≈ converted at load; the padding stays exactly 114', async () => {
  const bytes = await p3Photo();
  const target = { width: 640, height: 640, spec: ULTRA };
  const g = computeLetterbox(W, H, 640, 640, 'center');
  const got = await prepareImage(bytes, target, LIMITS, { applyIccProfile: true });
  const ignored = await prepareImage(bytes, target, LIMITS, { applyIccProfile: false });
  // libvips' own order: the profile applied as the image loads, then the same resize.
  const atLoad = await sharp(bytes).resize({ width: g.resizedWidth, height: g.resizedHeight, fit: 'fill', kernel: 'linear' }).toColourspace('srgb').raw().toBuffer();
  const reference = padToLetterbox(atLoad, g, 114);

  const vsReference = meanAbsDiff(got.pixels, reference);
  const vsIgnored = meanAbsDiff(got.pixels, ignored.pixels);
  assert.ok(vsReference < 0.5, `mean difference from convert-at-load is ${vsReference.toFixed(3)}`);
  // The transform really ran: P3 values read as sRGB are far off on saturated colours.
  assert.ok(vsIgnored > 3 * Math.max(vsReference, 0.5), `profile applied vs ignored differ by only ${vsIgnored.toFixed(3)}`);

  const rowBytes = 640 * 3;
  for (let y = 0; y < 640; y++) {
    const inside = y >= g.padTop && y < g.padTop + g.resizedHeight;
    for (let x = 0; x < 640; x++) {
      if (inside && x >= g.padLeft && x < g.padLeft + g.resizedWidth) continue;
      const i = y * rowBytes + x * 3;
      if (got.pixels[i] !== 114 || got.pixels[i + 1] !== 114 || got.pixels[i + 2] !== 114) {
        assert.fail(`pad pixel (${x}, ${y}) is ${got.pixels.subarray(i, i + 3).join(',')}, not 114`);
      }
    }
  }
});
