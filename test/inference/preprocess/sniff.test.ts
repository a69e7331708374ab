import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sniffFormat, type RasterFormat } from '../../../src/inference/preprocess/index.js';

const bytes = (...parts: (string | number[])[]): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === 'string' ? [...Buffer.from(p, 'latin1')] : p)));

/** An ISO-BMFF ftyp box: size, 'ftyp', major brand, minor version 0, compatible brands. */
function ftyp(major: string, ...compatible: string[]): Uint8Array {
  const size = 16 + 4 * compatible.length;
  return bytes([0, 0, 0, size], 'ftyp', major, [0, 0, 0, 0], ...compatible, [0, 0, 0, 8], 'meta');
}

const cases: [string, Uint8Array, RasterFormat | null][] = [
  ['jpeg', bytes([0xff, 0xd8, 0xff, 0xe0, 0, 0x10], 'JFIF'), 'jpeg'],
  ['png', bytes([0x89], 'PNG', [0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13], 'IHDR'), 'png'],
  ['webp', bytes('RIFF', [1, 2, 3, 4], 'WEBPVP8 '), 'webp'],
  ['gif87a', bytes('GIF87a', [1, 0, 1, 0]), 'gif'],
  ['gif89a', bytes('GIF89a', [1, 0, 1, 0]), 'gif'],
  ['tiff little-endian', bytes([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0]), 'tiff'],
  ['tiff big-endian', bytes([0x4d, 0x4d, 0, 0x2a, 0, 0, 0, 8]), 'tiff'],
  ['bigtiff', bytes([0x49, 0x49, 0x2b, 0, 8, 0, 0, 0]), 'tiff'],
  ['avif major', ftyp('avif', 'mif1', 'miaf'), 'avif'],
  ['avis major', ftyp('avis', 'msf1', 'avif'), 'avif'],
  ['mif1 major, avif compatible', ftyp('mif1', 'avif', 'miaf'), 'avif'],
  ['heic major', ftyp('heic', 'mif1', 'heic'), 'heif'],
  ['mif1 major, heic compatible', ftyp('mif1', 'mif1', 'heic'), 'heif'],
  ['generic mif1', ftyp('mif1', 'mif1'), 'heif'],
  ['mp4 is not an image', ftyp('isom', 'iso2', 'mp41'), null],
  ['ftyp box too small', bytes([0, 0, 0, 8], 'ftypavif', [0, 0, 0, 0]), null],
  ['riff wave', bytes('RIFF', [1, 2, 3, 4], 'WAVEfmt '), null],
  ['gif88a', bytes('GIF88a', [1, 0, 1, 0]), null],
  ['svg', bytes('<svg xmlns="http://www.w3.org/2000/svg"/>'), null],
  ['xml', bytes('<?xml version="1.0"?><svg/>'), null],
  ['pdf', bytes('%PDF-1.7\n'), null],
  ['bmp', bytes('BM', [0, 0, 0, 0, 0, 0]), null],
  ['text', bytes('hello world'), null],
  ['empty', new Uint8Array(0), null],
  ['truncated jpeg magic', bytes([0xff, 0xd8]), null],
  ['truncated png magic', bytes([0x89], 'PNG'), null],
  ['riff too short', bytes('RIFF', [1, 2, 3, 4], 'WEB'), null],
];

for (const [name, input, expected] of cases) {
  test(`sniffFormat: ${name} → ${expected ?? 'null'}`, () => {
    assert.equal(sniffFormat(input), expected);
  });
}
