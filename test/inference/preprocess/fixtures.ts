/** Specs, limits and small helpers shared by the preprocess tests. */
import zlib from 'node:zlib';
import {
  prepareTensor,
  type Decoder,
  type PrepareLimits,
  type PrepareOptions,
  type PrepareTarget,
  type RasterFormat,
} from '../../../src/inference/preprocess/index.js';
import type { LetterboxGeometry, LetterboxSpec } from '../../../src/inference/types.js';

/** Ultralytics / YOLOv5: RGB, /255, centered, pad 114. */
export const ULTRA: LetterboxSpec = {
  placement: 'center',
  padValue: 114,
  channelOrder: 'rgb',
  scale: 1 / 255,
  mean: [0, 0, 0],
  std: [1, 1, 1],
};

/** YOLOX demo: BGR, raw 0-255, top-left, pad 114. */
export const YOLOX: LetterboxSpec = {
  placement: 'top-left',
  padValue: 114,
  channelOrder: 'bgr',
  scale: 1,
  mean: [0, 0, 0],
  std: [1, 1, 1],
};

export const LIMITS = { maxBytes: 20 * 1024 * 1024, maxPixels: 40_000_000 };

/** RGB of pixel (x, y) in an HWC RGB buffer of the given width. */
export function rgbAt(pixels: Uint8Array, width: number, x: number, y: number): [number, number, number] {
  const i = (y * width + x) * 3;
  return [pixels[i], pixels[i + 1], pixels[i + 2]];
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A valid-looking PNG whose IHDR declares width x height RGB8 but whose IDAT holds only 1 KB of
 * zeros: the shape of a decompression bomb, tiny on the wire.
 */
export function pngDeclaring(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(1024))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Copy of a baseline/progressive JPEG with its SOF frame size rewritten (the header lies). */
export function jpegDeclaring(jpeg: Uint8Array, width: number, height: number): Buffer {
  const out = Buffer.from(jpeg);
  for (let i = 2; i + 9 < out.length;) {
    if (out[i] !== 0xff) throw new Error('not at a JPEG marker');
    const marker = out[i + 1];
    const len = out.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      out.writeUInt16BE(height, i + 5);
      out.writeUInt16BE(width, i + 7);
      return out;
    }
    i += 2 + len;
  }
  throw new Error('no SOF marker found');
}

/** What prepareImage returns: the model input as HWC RGB bytes, for tests that look at pixels. */
export interface PreparedImage {
  pixels: Uint8Array;
  width: number;
  height: number;
  geometry: LetterboxGeometry;
  format: RasterFormat;
  decoder: Decoder;
  timing: { decodeMs: number; preprocessMs: number };
}

/**
 * The real preprocessing (prepareTensor: the worker's code run in this thread) with the target's
 * placement and pad value but an identity RGB 0-255 normalisation, read back as HWC bytes.
 */
export async function prepareImage(
  bytes: Uint8Array,
  target: PrepareTarget,
  limits: PrepareLimits,
  options: Partial<PrepareOptions> = {},
): Promise<PreparedImage> {
  const spec: LetterboxSpec = { ...target.spec, channelOrder: 'rgb', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] };
  const r = await prepareTensor(bytes, { ...target, spec }, limits, { applyIccProfile: false, ...options });
  const n = target.width * target.height;
  const pixels = new Uint8Array(n * 3);
  for (let i = 0; i < n; i++)
    for (let c = 0; c < 3; c++) pixels[i * 3 + c] = Math.min(255, Math.max(0, Math.round(r.tensor[c * n + i]!)));
  return {
    pixels,
    width: target.width,
    height: target.height,
    geometry: r.geometry,
    format: r.format,
    decoder: r.decoder,
    timing: r.timing,
  };
}
