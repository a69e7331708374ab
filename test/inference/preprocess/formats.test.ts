/** prepareImage: every accepted encoding ends as 3-channel 8-bit sRGB, letterboxed as the spec says. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp, { type Sharp } from 'sharp';
import { prepareSource, type RasterFormat } from '../../../src/inference/preprocess/index.js';
import { imagePath, requireShared, sharedPath } from '../../support/shared.js';
import { LIMITS, ULTRA, YOLOX, prepareImage, rgbAt, type PreparedImage } from './fixtures.js';

const TARGET = { width: 64, height: 64, spec: ULTRA };

/** A solid 32x16 image: letterboxed into 64x64 it fills rows 16..47, pad 16 above and below. */
const solid = (rgb: [number, number, number], channels: 3 | 4 = 3, alpha = 255): Sharp =>
  sharp({
    create: { width: 32, height: 16, channels, background: { r: rgb[0], g: rgb[1], b: rgb[2], alpha: alpha / 255 } },
  });

function assertLayout(r: PreparedImage, format: RasterFormat): void {
  assert.equal(r.format, format);
  assert.equal(r.pixels.length, 64 * 64 * 3);
  assert.deepEqual([r.width, r.height], [64, 64]);
  assert.deepEqual([r.geometry.srcWidth, r.geometry.srcHeight], [32, 16]);
  assert.deepEqual([r.geometry.padTop, r.geometry.padBottom], [16, 16]);
  // Padding is exactly spec.padValue on all three channels, whatever the input colour model.
  assert.deepEqual(rgbAt(r.pixels, 64, 32, 2), [114, 114, 114]);
  assert.deepEqual(rgbAt(r.pixels, 64, 5, 60), [114, 114, 114]);
}

function assertNear(actual: number[], expected: number[], tol: number, what: string): void {
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(actual[c] - expected[c]) <= tol, `${what}: ${actual} vs ${expected}`);
}

const CENTER = (r: PreparedImage): number[] => rgbAt(r.pixels, 64, 32, 32);

const cases: { name: string; format: RasterFormat; make: () => Promise<Buffer>; expect: number[]; tol: number }[] = [
  {
    name: 'jpeg',
    format: 'jpeg',
    make: () => solid([200, 40, 90]).jpeg({ quality: 95 }).toBuffer(),
    expect: [200, 40, 90],
    tol: 4,
  },
  { name: 'png', format: 'png', make: () => solid([200, 40, 90]).png().toBuffer(), expect: [200, 40, 90], tol: 0 },
  {
    name: 'webp lossless',
    format: 'webp',
    make: () => solid([200, 40, 90]).webp({ lossless: true }).toBuffer(),
    expect: [200, 40, 90],
    tol: 0,
  },
  { name: 'tiff', format: 'tiff', make: () => solid([200, 40, 90]).tiff().toBuffer(), expect: [200, 40, 90], tol: 1 },
  {
    name: 'avif',
    format: 'avif',
    make: () => solid([200, 40, 90]).avif({ quality: 90 }).toBuffer(),
    expect: [200, 40, 90],
    tol: 8,
  },
  {
    name: 'grayscale jpeg',
    format: 'jpeg',
    make: () => solid([90, 90, 90]).greyscale().toColourspace('b-w').jpeg().toBuffer(),
    expect: [90, 90, 90],
    tol: 2,
  },
  {
    // Alpha is dropped, not flattened: a fully transparent pixel keeps its colour (cv2.IMREAD_COLOR).
    name: 'rgba png, transparent',
    format: 'png',
    make: () => solid([10, 200, 30], 4, 0).png().toBuffer(),
    expect: [10, 200, 30],
    tol: 0,
  },
  {
    name: 'grey+alpha png',
    format: 'png',
    make: () => solid([77, 77, 77], 4, 128).toColourspace('b-w').png().toBuffer(),
    expect: [77, 77, 77],
    tol: 3, // the b-w conversion of the encoder is not exact; R == G == B is what matters
  },
  {
    name: '16-bit png',
    format: 'png',
    make: () => solid([200, 40, 90]).toColourspace('rgb16').png().toBuffer(),
    expect: [200, 40, 90],
    tol: 1,
  },
  {
    name: 'cmyk jpeg',
    format: 'jpeg',
    make: () => solid([200, 40, 90]).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer(),
    expect: [200, 40, 90],
    tol: 30, // CMYK round trip through ICC profiles is not exact
  },
  {
    name: 'cmyk tiff',
    format: 'tiff',
    make: () => solid([200, 40, 90]).toColourspace('cmyk').tiff().toBuffer(),
    expect: [200, 40, 90],
    tol: 30,
  },
];

for (const c of cases) {
  test(`${c.name} → 3-channel 8-bit sRGB, padded with 114`, async () => {
    const input = await c.make();
    const r = await prepareImage(input, TARGET, LIMITS);
    assertLayout(r, c.format);
    assertNear(CENTER(r), c.expect, c.tol, c.name);
  });
}

test('alpha is dropped before the resize, exactly like decode-then-drop (cv2.IMREAD_COLOR)', async () => {
  // Left half opaque red, right half fully transparent green: a premultiplied resize would blacken it.
  const w = 40;
  const h = 20;
  const raw = Buffer.alloc(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set(x < w / 2 ? [220, 20, 20, 255] : [20, 220, 20, 0], (y * w + x) * 4);
  }
  const png = await sharp(raw, { raw: { width: w, height: h, channels: 4 } })
    .png()
    .toBuffer();
  const r = await prepareImage(png, TARGET, LIMITS);
  // The same colours without an alpha channel at all: what decode-then-drop must give.
  const rgb = await sharp(png).removeAlpha().png().toBuffer();
  const ref = await prepareImage(rgb, TARGET, LIMITS);
  assert.deepEqual(r.pixels, ref.pixels);
  assert.deepEqual(rgbAt(r.pixels, 64, 60, 32), [20, 220, 20]);
});

test('input colour models really are what the cases claim', async () => {
  const meta = async (b: Promise<Buffer>): Promise<[string, number, string]> => {
    const m = await sharp(await b).metadata();
    return [m.space, m.channels, m.depth];
  };
  assert.deepEqual(await meta(solid([90, 90, 90]).greyscale().toColourspace('b-w').jpeg().toBuffer()), [
    'b-w',
    1,
    'uchar',
  ]);
  assert.deepEqual(await meta(solid([1, 2, 3]).toColourspace('rgb16').png().toBuffer()), ['rgb16', 3, 'ushort']);
  assert.deepEqual(await meta(solid([1, 2, 3]).toColourspace('cmyk').jpeg().toBuffer()), ['cmyk', 4, 'uchar']);
  assert.deepEqual(await meta(solid([1, 2, 3], 4, 0).png().toBuffer()), ['srgb', 4, 'uchar']);
});

test('animated GIF: first frame only, one frame high', async () => {
  const red = await solid([255, 0, 0]).gif().toBuffer();
  const blue = await solid([0, 0, 255]).gif().toBuffer();
  const anim = await sharp([red, blue, red], { join: { animated: true } })
    .gif()
    .toBuffer();
  assert.equal((await sharp(anim).metadata()).pages, 3);
  const r = await prepareImage(anim, TARGET, LIMITS);
  assertLayout(r, 'gif');
  assertNear(CENTER(r), [255, 0, 0], 8, 'gif frame 0');
});

test('YOLOX spec: image at top-left, padding right and bottom', async () => {
  const png = await solid([200, 40, 90]).png().toBuffer();
  const r = await prepareImage(png, { width: 64, height: 64, spec: YOLOX }, LIMITS);
  assert.deepEqual([r.geometry.padLeft, r.geometry.padTop, r.geometry.padRight, r.geometry.padBottom], [0, 0, 0, 32]);
  assert.deepEqual(rgbAt(r.pixels, 64, 0, 0), [200, 40, 90]); // still RGB: BGR is toTensor's job
  assert.deepEqual(rgbAt(r.pixels, 64, 63, 31), [200, 40, 90]);
  assert.deepEqual(rgbAt(r.pixels, 64, 0, 32), [114, 114, 114]);
});

test('every EXIF orientation: displayed size swaps for 5-8', async () => {
  const raw = await solid([1, 2, 3]).png().toBuffer();
  for (let orientation = 1; orientation <= 8; orientation++) {
    const jpeg = await sharp(raw).withMetadata({ orientation }).jpeg().toBuffer();
    assert.equal((await sharp(jpeg).metadata()).orientation, orientation);
    const r = await prepareImage(jpeg, TARGET, LIMITS);
    const swapped = orientation >= 5;
    assert.deepEqual(
      [r.geometry.srcWidth, r.geometry.srcHeight],
      swapped ? [16, 32] : [32, 16],
      `orientation ${orientation}`,
    );
  }
});

/** Mean absolute difference of two equal-length byte buffers. */
function meanAbsDiff(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

test('bus.jpg: 810x1080 → 640 letterbox, timings reported', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const r = await prepareImage(readFileSync(imagePath('bus.jpg')), { width: 640, height: 640, spec: ULTRA }, LIMITS);
  assert.equal(r.format, 'jpeg');
  assert.deepEqual(
    [r.geometry.srcWidth, r.geometry.srcHeight, r.geometry.resizedWidth, r.geometry.padLeft, r.geometry.padRight],
    [810, 1080, 480, 80, 80],
  );
  assert.deepEqual(rgbAt(r.pixels, 640, 40, 300), [114, 114, 114]); // left pad
  assert.deepEqual(rgbAt(r.pixels, 640, 600, 300), [114, 114, 114]); // right pad
  assert.notDeepEqual(rgbAt(r.pixels, 640, 320, 300), [114, 114, 114]); // the bus
  assert.ok(r.timing.decodeMs >= 0 && r.timing.preprocessMs > 0);
});

test('EXIF orientation: a rotated bus.jpg tagged to display upright equals the original', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const bus = readFileSync(imagePath('bus.jpg'));
  // Store the pixels rotated 90° clockwise; orientation 8 tells viewers to turn them back.
  const stored = await sharp(bus).rotate(90).withMetadata({ orientation: 8 }).jpeg({ quality: 95 }).toBuffer();
  const m = await sharp(stored).metadata();
  assert.deepEqual([m.width, m.height, m.orientation], [1080, 810, 8]);

  const target = { width: 640, height: 640, spec: ULTRA };
  const upright = await prepareImage(bus, target, LIMITS);
  const tagged = await prepareImage(stored, target, LIMITS);
  assert.deepEqual([tagged.geometry.srcWidth, tagged.geometry.srcHeight], [810, 1080]);
  assert.deepEqual(tagged.geometry, upright.geometry);
  const diff = meanAbsDiff(tagged.pixels, upright.pixels);
  assert.ok(diff < 3, `mean abs diff ${diff.toFixed(2)} vs the upright original`);
  // Ignoring the tag would give a very different buffer: make sure the measure can tell.
  const ignored = await sharp(bus)
    .rotate(90)
    .resize(640, 480, { kernel: 'linear' })
    .extend({ top: 80, bottom: 80, background: '#727272' })
    .removeAlpha()
    .raw()
    .toBuffer();
  assert.ok(meanAbsDiff(ignored, upright.pixels) > 20);
});

test('grayscale coco128 000000000086.jpg → 3 channels with R == G == B', async (t) => {
  const rel = ['datasets', 'coco128', 'images', 'train2017', '000000000086.jpg'] as const;
  if (!requireShared(t, ...rel)) return;
  const bytes = readFileSync(sharedPath(...rel));
  const m = await sharp(bytes).metadata();
  assert.equal(m.channels, 1);
  const r = await prepareImage(bytes, { width: 640, height: 640, spec: ULTRA }, LIMITS);
  assert.equal(r.pixels.length, 640 * 640 * 3);
  let grey = true;
  for (let i = 0; i < r.pixels.length; i += 3) {
    // R == G == B everywhere, image and padding alike.
    if (r.pixels[i] !== r.pixels[i + 1] || r.pixels[i] !== r.pixels[i + 2]) {
      grey = false;
      break;
    }
  }
  assert.ok(grey, 'some pixel has R, G, B not all equal');
  assert.deepEqual([r.geometry.srcWidth, r.geometry.srcHeight], [m.width, m.height]);
});

test('a PNG three times the input is shrunk by libvips before it crosses to the worker; geometry and colours are those of the full image', async () => {
  const w = 1920;
  const h = 960;
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) raw.set([x < w / 2 ? 200 : 30, (y * 255) / h, 90], (y * w + x) * 3);
  const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
  const target = { width: 640, height: 640, spec: ULTRA };
  const p = await prepareSource(png, target, LIMITS, { applyIccProfile: false });
  assert.equal(p.decoder, 'sharp');
  assert.deepEqual([p.source.width, p.source.height], [640, 320], 'shrunk 3x: what crosses to the worker');
  assert.deepEqual(
    [p.geometry.srcWidth, p.geometry.srcHeight, p.geometry.resizedWidth, p.geometry.resizedHeight],
    [1920, 960, 640, 320],
  );
  const r = await prepareImage(png, target, LIMITS);
  assertNear(rgbAt(r.pixels, 640, 100, 320), [200, 128, 90], 3, 'left half, middle row');
  assertNear(rgbAt(r.pixels, 640, 540, 320), [30, 128, 90], 3, 'right half, middle row');
});
