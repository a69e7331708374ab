/** prepareImage: every kind of bad input ends as INVALID_INPUT with a message that says what was wrong. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { SightlineError } from '../../../src/errors.js';
import { ACCEPTED_FORMATS } from '../../../src/inference/preprocess/index.js';
import { imagePath, requireShared } from '../../support/shared.js';
import { LIMITS, ULTRA, jpegDeclaring, pngDeclaring, prepareImage } from './fixtures.js';

const TARGET = { width: 640, height: 640, spec: ULTRA };

/** Asserts prepareImage rejects with INVALID_INPUT and a message matching every pattern. */
async function rejects(bytes: Uint8Array, patterns: RegExp[], limits = LIMITS): Promise<SightlineError> {
  let caught: unknown;
  try {
    await prepareImage(bytes, TARGET, limits);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof SightlineError, `expected a SightlineError, got ${String(caught)}`);
  assert.equal(caught.code, 'INVALID_INPUT');
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

const readBus = (): Buffer => readFileSync(imagePath('bus.jpg'));
const acceptedList = new RegExp(ACCEPTED_FORMATS.join(', '));

test('empty input', async () => {
  await rejects(new Uint8Array(0), [/empty/, /0 bytes/]);
});

test('over maxBytes: states the size and the limit', async () => {
  const e = await rejects(new Uint8Array(2048).fill(0xff), [/2048 bytes/, /limit of 1000 bytes/], {
    ...LIMITS,
    maxBytes: 1000,
  });
  assert.equal(e.fields.bytes, 2048);
  assert.equal(e.fields.maxBytes, 1000);
});

test('unknown formats are refused before decoding, listing the accepted formats', async () => {
  const inputs = [
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
    '<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
    '%PDF-1.4\n1 0 obj << >> endobj',
    'BM\0\0\0\0 a bitmap',
    'just some text',
  ];
  for (const s of inputs) await rejects(Buffer.from(s), [/unrecognised image format/, acceptedList]);
});

test('HEVC HEIF is recognised but refused as unsupported', async () => {
  const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic\0\0\0\0mif1heic'), Buffer.alloc(64)]);
  await rejects(heic, [/unsupported image format 'heif'/, acceptedList]);
});

test('truncated and corrupt data are wrapped, never raw sharp errors', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const bus = readBus();
  await rejects(bus.subarray(0, 100_000), [/jpeg image could not be decoded/, /truncated/]);
  await rejects(bus.subarray(0, 10), [/jpeg image could not be decoded/]);
  const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
  await rejects(Buffer.concat([png.subarray(0, 8), Buffer.alloc(64, 7)]), [/png image could not be decoded/, /header/]);
  await rejects(pngDeclaring(100, 100), [/png image could not be decoded/]); // IDAT far too short
});

test('random corruption of a JPEG either decodes or fails as INVALID_INPUT', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const bus = readBus();
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let i = 0; i < 12; i++) {
    const b = Buffer.from(bus);
    for (let k = 0; k < 20; k++) b[3 + rand(b.length - 3)] = rand(256);
    const cut = i % 3 === 0 ? b.subarray(0, 3 + rand(b.length - 3)) : b;
    try {
      const r = await prepareImage(cut, TARGET, LIMITS);
      assert.equal(r.pixels.length, 640 * 640 * 3);
    } catch (e) {
      assert.ok(e instanceof SightlineError && e.code === 'INVALID_INPUT', `raw error escaped: ${String(e)}`);
    }
  }
});

test('zero-size dimensions are refused', async () => {
  await rejects(pngDeclaring(0, 100), [/png image could not be decoded/, /header/]);
});

test('over maxPixels: message states the dimensions and the limit', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const e = await rejects(readBus(), [/810x1080/, /874800 pixels/, /limit of 800000 pixels/], {
    ...LIMITS,
    maxPixels: 800_000,
  });
  assert.deepEqual([e.fields.width, e.fields.height], [810, 1080]);
});

test('decompression bombs are refused from the header, fast, without allocating', async (t) => {
  if (!requireShared(t, 'images', 'bus.jpg')) return;
  const bombs = [pngDeclaring(50_000, 50_000), jpegDeclaring(readBus(), 60_000, 60_000)];
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  for (const bomb of bombs) {
    const t0 = performance.now();
    const e = await rejects(bomb, [/over the limit of 40000000 pixels/]);
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `bomb took ${ms.toFixed(0)} ms to refuse`);
    assert.ok(/50000x50000|60000x60000/.test(e.message), e.message);
  }
  const grewMb = (process.memoryUsage().rss - rssBefore) / 1e6;
  assert.ok(grewMb < 200, `RSS grew by ${grewMb.toFixed(0)} MB`);
});

test('errors survive the worker boundary as plain data', async () => {
  const e = await rejects(new Uint8Array(0), [/empty/]);
  const back = SightlineError.fromJSON(structuredClone(e.toJSON()));
  assert.equal(back.code, 'INVALID_INPUT');
  assert.equal(back.message, e.message);
});
