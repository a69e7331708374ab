/** readJpegHeader: frame, orientation and profile read without a decoder, agreeing with libvips. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { readJpegHeader, turboCanDecode } from '../../../src/inference/preprocess/index.js';
import { imagePath, requireShared } from '../../support/shared.js';

const solid = (w: number, h: number) => sharp({ create: { width: w, height: h, channels: 3, background: '#407080' } });

test('size, components, process and orientation agree with sharp.metadata for every orientation', async () => {
  for (let o = 1; o <= 8; o++) {
    for (const progressive of [false, true]) {
      const bytes = await solid(40, 24).withMetadata({ orientation: o }).jpeg({ progressive }).toBuffer();
      const m = await sharp(bytes).metadata();
      const h = readJpegHeader(bytes);
      assert.ok(h);
      assert.deepEqual(
        [h.width, h.height, h.components, h.precision, h.orientation],
        [m.width, m.height, m.channels, 8, m.orientation ?? 1],
      );
      assert.equal(h.process, progressive ? 'progressive' : 'baseline');
    }
  }
});

test('grey, CMYK and profile-tagged JPEGs are recognised; which ones libjpeg-turbo decodes', async () => {
  const grey = readJpegHeader(await solid(8, 8).toColourspace('b-w').jpeg().toBuffer())!;
  const cmyk = readJpegHeader(await solid(8, 8).toColourspace('cmyk').jpeg().toBuffer())!;
  const p3 = readJpegHeader(await solid(8, 8).withIccProfile('p3').jpeg().toBuffer())!;
  assert.equal(grey.components, 1);
  assert.equal(cmyk.components, 4);
  assert.equal(p3.hasIccProfile, true);
  assert.equal(turboCanDecode(grey, true), true);
  assert.equal(turboCanDecode(cmyk, false), false);
  assert.equal(turboCanDecode(p3, false), true);
  assert.equal(turboCanDecode(p3, true), false);
});

test('bus.jpg: 810x1080, YCbCr, with an embedded profile', (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const h = readJpegHeader(readFileSync(imagePath('bus.jpg')));
  assert.deepEqual(h && [h.width, h.height, h.components, h.process, h.orientation, h.hasIccProfile], [
    810,
    1080,
    3,
    'baseline',
    1,
    true,
  ]);
});

test('broken marker structure gives null, never an exception or a loop', () => {
  assert.equal(readJpegHeader(new Uint8Array([0xff, 0xd8])), null);
  assert.equal(readJpegHeader(new Uint8Array([0xff, 0xd8, 0x00, 0x00, 0x00, 0x00])), null);
  assert.equal(readJpegHeader(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x01, 0, 0])), null); // length < 2
  assert.equal(readJpegHeader(new Uint8Array([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 8, 0])), null); // SOF cut short
  const fills = new Uint8Array(10_000).fill(0xff);
  fills[1] = 0xd8;
  assert.equal(readJpegHeader(fills), null);
  // A corrupt EXIF block reads as orientation 1, as decoders treat an unreadable tag.
  const exif = Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe1, 0x00, 0x10]),
    Buffer.from('Exif\0\0MM\0\x2a\xff\xff\xff\xff', 'latin1'),
    Buffer.from([0xff, 0xc0, 0x00, 0x11, 8, 0, 2, 0, 3, 3]),
  ]);
  assert.equal(readJpegHeader(exif)?.orientation, 1);
});
