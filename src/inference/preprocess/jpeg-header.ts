/**
 * What a JPEG's header says, read in JS without a decoder: frame size and layout (SOF), EXIF
 * orientation (APP1), whether an ICC profile is embedded (APP2) and Adobe's colour transform
 * (APP14). Enough to check limits before any pixel is allocated and to decide whether libjpeg-turbo
 * can decode the file directly (decode.ts). Pure; a bounded walk over the marker segments up to the
 * first scan, so hostile input costs at most one pass over the header bytes.
 */

/** EXIF orientation 1-8 (1: stored as displayed). */
export type Orientation = 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8;

export interface JpegHeader {
  /** Stored size, before orientation. */
  readonly width: number;
  readonly height: number;
  /** 1 (grey), 3 (YCbCr or RGB) or 4 (CMYK / YCCK). */
  readonly components: number;
  /** Sample precision in bits (8 for nearly every JPEG; 12 and 16 exist). */
  readonly precision: number;
  /** The SOF marker's process: baseline/extended Huffman, progressive, lossless, arithmetic. */
  readonly process: 'baseline' | 'progressive' | 'lossless' | 'arithmetic' | 'other';
  readonly orientation: Orientation;
  readonly hasIccProfile: boolean;
  /** Offset of the first scan's SOS marker (the byte length when none was reached). */
  readonly scanStart: number;
}

const SOI = 0xd8;
const SOS = 0xda;
const EOI = 0xd9;
const APP1 = 0xe1;
const APP2 = 0xe2;

/** SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range. */
const isSof = (m: number) => m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;

function processOf(marker: number): JpegHeader['process'] {
  if (marker === 0xc0 || marker === 0xc1) return 'baseline';
  if (marker === 0xc2) return 'progressive';
  if (marker === 0xc3) return 'lossless';
  if (marker >= 0xc9) return 'arithmetic';
  return 'other'; // hierarchical (C5-C7)
}

const startsWithAscii = (b: Uint8Array, at: number, s: string) => {
  if (at + s.length > b.length) return false;
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false;
  return true;
};

/**
 * Orientation from an APP1 Exif payload (starting at `at`, `len` bytes): IFD0's tag 0x0112. Anything
 * malformed reads as 1, as libvips and OpenCV treat an unreadable tag.
 */
export function exifOrientation(b: Uint8Array, at: number, len: number): Orientation {
  const end = Math.min(b.length, at + len);
  const tiff = at + 6; // after "Exif\0\0"
  if (!startsWithAscii(b, at, 'Exif\0\0') || tiff + 8 > end) return 1;
  const little = b[tiff] === 0x49 && b[tiff + 1] === 0x49;
  if (!little && !(b[tiff] === 0x4d && b[tiff + 1] === 0x4d)) return 1;
  const u16 = (o: number) => (little ? b[o]! | (b[o + 1]! << 8) : (b[o]! << 8) | b[o + 1]!);
  const u32 = (o: number) =>
    little
      ? (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16)) + b[o + 3]! * 0x1000000
      : b[o]! * 0x1000000 + ((b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!);
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 1;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > end) return 1;
    if (u16(e) !== 0x0112) continue;
    const v = u16(e + 8); // SHORT, count 1: the value sits in the entry
    return v >= 1 && v <= 8 ? (v as Orientation) : 1;
  }
  return 1;
}

/**
 * Parses a JPEG's header, or returns null when the marker structure is broken before a frame header
 * (the caller then lets the full decoder produce the diagnosis).
 */
export function readJpegHeader(b: Uint8Array): JpegHeader | null {
  if (b.length < 4 || b[0] !== 0xff || b[1] !== SOI) return null;
  let orientation: Orientation = 1;
  let sawExif = false;
  let hasIccProfile = false;
  let frame: Omit<JpegHeader, 'orientation' | 'hasIccProfile' | 'scanStart'> | null = null;
  let scanStart = b.length;
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return null;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === SOS || marker === EOI) {
      scanStart = i;
      break;
    }
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      i += 2; // standalone markers carry no length
      continue;
    }
    const len = (b[i + 2]! << 8) | b[i + 3]!;
    if (len < 2) return null;
    const at = i + 4;
    if (isSof(marker) && frame === null) {
      if (at + 6 > b.length) return null;
      frame = {
        precision: b[at]!,
        height: (b[at + 1]! << 8) | b[at + 2]!,
        width: (b[at + 3]! << 8) | b[at + 4]!,
        components: b[at + 5]!,
        process: processOf(marker),
      };
    } else if (marker === APP1 && !sawExif && startsWithAscii(b, at, 'Exif\0\0')) {
      sawExif = true;
      orientation = exifOrientation(b, at, len - 2);
    } else if (marker === APP2 && startsWithAscii(b, at, 'ICC_PROFILE\0')) {
      hasIccProfile = true;
    }
    i += 2 + len;
  }
  return frame && { ...frame, orientation, hasIccProfile, scanStart };
}

/**
 * Progressive JPEGs may carry any number of scans, each a pass over the whole image: a small file with
 * thousands of them is a known way to burn a decoder's CPU (libjpeg-turbo's TJFLAG_LIMITSCANS uses the
 * same bound). Real encoders write about 10. decode.ts checks it for every decoder, before decoding.
 */
export const MAX_PROGRESSIVE_SCANS = 500;

const SOS_MARKER = Buffer.from([0xff, SOS]);

/**
 * Whether the scans from `from` on number more than `limit`: each one is an SOS marker, which entropy-
 * coded data cannot contain (a 0xFF there is stuffed as FF 00). A native byte search, so a 10 MB file
 * costs a few milliseconds at most.
 */
export function scansOver(b: Uint8Array, from: number, limit: number): boolean {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  let n = 0;
  for (let i = buf.indexOf(SOS_MARKER, from); i !== -1; i = buf.indexOf(SOS_MARKER, i + 2)) {
    if (++n > limit) return true;
  }
  return false;
}

/** Width and height as displayed: orientations 5-8 swap them. */
export function orientedSize(width: number, height: number, o: Orientation): { width: number; height: number } {
  return o >= 5 ? { width: height, height: width } : { width, height };
}
