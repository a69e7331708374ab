/**
 * Encoded bytes → a decodable source for the model input, every limit checked before a pixel exists.
 *
 * Two decoders. Baseline and progressive 8-bit JPEGs (nearly every camera and phone photo) are
 * decoded by libjpeg-turbo directly, in the inference worker (jpeg-turbo.ts): at the decoder's own
 * speed, into a buffer reused between requests. Everything else (PNG, WebP, GIF, TIFF, AVIF, CMYK and
 * 12-bit JPEGs, JPEGs whose ICC profile is to be applied, and any JPEG libjpeg-turbo refuses) is decoded
 * here by sharp/libvips, EXIF-oriented, to 8-bit sRGB at its stored size. Either way the resize,
 * padding and normalisation happen once, in resample.ts, so every format is resized the same way.
 *
 * Every way the bytes can be wrong ends as SightlineError('INVALID_INPUT'); decoder errors never
 * escape raw.
 */
import sharp, { type Metadata, type Sharp, type SharpOptions } from 'sharp';
import { performance } from 'node:perf_hooks';
import { SightlineError } from '../../errors.js';
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import { MAX_PROGRESSIVE_SCANS, readJpegHeader, orientedSize, scansOver, type JpegHeader } from './jpeg-header.js';
import { computeLetterbox } from './letterbox.js';
import { sniffFormat, type RasterFormat } from './sniff.js';
import { decoderReason, type Decoder, type ImageSource } from './source.js';

/**
 * Formats we decode. 'heif' (HEVC-coded HEIC) is recognised by sniffFormat but refused: sharp's
 * prebuilt libheif has no HEVC decoder (sharp.format.heif.input.fileSuffix is ['.avif'] only), so
 * accepting it would only turn a clear refusal into an obscure decode error.
 */
export const ACCEPTED_FORMATS: readonly RasterFormat[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'];

const FILE_EXTENSIONS: Readonly<Partial<Record<RasterFormat, readonly string[]>>> = {
  jpeg: ['.jpg', '.jpeg'],
  png: ['.png'],
  webp: ['.webp'],
  gif: ['.gif'],
  tiff: ['.tif', '.tiff'],
  avif: ['.avif'],
};

/**
 * File name extensions of the accepted formats (lower case), for the tools that pick images out of
 * folders (validate, datasets, batch, drift profiles). The bytes still decide: a request is sniffed.
 */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set(ACCEPTED_FORMATS.flatMap((f) => FILE_EXTENSIONS[f] ?? []));

export interface PreparedSource {
  source: ImageSource;
  /** Source size is the displayed size, after EXIF orientation. */
  geometry: LetterboxGeometry;
  format: RasterFormat;
  decoder: Decoder;
  /** Header checks, plus sharp's decode when sharp decoded. */
  decodeMs: number;
}

export interface PrepareTarget {
  width: number;
  height: number;
  spec: LetterboxSpec;
}

export interface PrepareLimits {
  maxBytes: number;
  maxPixels: number;
}

export interface PrepareOptions {
  /**
   * Convert images with an embedded ICC profile to sRGB. Off by default: Ultralytics and YOLOX read
   * their training images with OpenCV, which ignores embedded profiles, so the model saw unconverted
   * pixels. On: what a colour-managed viewer shows (decoded by sharp, slower for tagged photos).
   */
  applyIccProfile: boolean;
  /** 'sharp' forces the general decoder (used when libjpeg-turbo refused a file, and to compare). */
  decoder?: 'auto' | 'sharp';
  /**
   * Let libjpeg-turbo decode at 1/2, 1/4 or 1/8 size in the IDCT when the model input is at most that
   * fraction of the image (default true): less work than a full decode, and the resample then shrinks
   * less. False: every JPEG is decoded at full size, as OpenCV's imread does.
   */
  jpegDctScaling?: boolean;
}

/** The name sharp's metadata() reports for each format we accept (AVIF comes from the heif loader). */
const SHARP_FORMAT: Readonly<Record<RasterFormat, string>> = {
  jpeg: 'jpeg',
  png: 'png',
  webp: 'webp',
  gif: 'gif',
  tiff: 'tiff',
  avif: 'heif',
  heif: 'heif',
};

const invalid = (message: string, fields: Record<string, unknown>, cause?: unknown): SightlineError =>
  new SightlineError('INVALID_INPUT', message, fields, cause === undefined ? undefined : { cause });

/** A caller-facing diagnosis of a decoder failure; the decoder's own words follow in parentheses. */
function diagnose(reason: string): string {
  if (/premature end|truncat|unexpected end/i.test(reason)) return 'the data is truncated';
  if (/corrupt header|unsupported image format/i.test(reason)) return 'the header is corrupt or unreadable';
  return 'the data is corrupt';
}

const isPixelLimitError = (e: unknown): boolean => e instanceof Error && /pixel limit/i.test(e.message);

function tooManyPixels(
  width: number,
  height: number,
  maxPixels: number,
  fields: Record<string, unknown>,
): SightlineError {
  return invalid(`image is ${width}x${height} (${width * height} pixels), over the limit of ${maxPixels} pixels`, {
    ...fields,
    width,
    height,
    maxPixels,
  });
}

/**
 * sharp refused the header for its pixel count without saying the size. Read the header again with no
 * limit (metadata never allocates pixels) so the message can state the dimensions.
 */
async function pixelLimitError(
  bytes: Uint8Array,
  maxPixels: number,
  fields: Record<string, unknown>,
  cause: unknown,
): Promise<SightlineError> {
  try {
    const m = await sharp(bytes, { limitInputPixels: false, pages: 1, autoOrient: true }).metadata();
    return tooManyPixels(m.autoOrient?.width ?? m.width, m.autoOrient?.height ?? m.height, maxPixels, fields);
  } catch {
    return invalid(`image dimensions exceed the limit of ${maxPixels} pixels`, { ...fields, maxPixels }, cause);
  }
}

/** Wraps anything sharp threw; SightlineErrors pass through unchanged. */
async function wrapDecodeError(
  e: unknown,
  bytes: Uint8Array,
  format: RasterFormat,
  maxPixels: number,
  fields: Record<string, unknown>,
): Promise<SightlineError> {
  if (e instanceof SightlineError) return e;
  if (isPixelLimitError(e)) return pixelLimitError(bytes, maxPixels, fields, e);
  const reason = decoderReason(e);
  return invalid(`${format} image could not be decoded: ${diagnose(reason)} (${reason})`, { ...fields, reason }, e);
}

/** Size, limit and format checks that need no decoder. */
function checkBytes(bytes: Uint8Array, maxBytes: number): RasterFormat {
  if (bytes.length === 0) throw invalid('image is empty (0 bytes)', { bytes: 0 });
  if (bytes.length > maxBytes) {
    throw invalid(`image is ${bytes.length} bytes, over the limit of ${maxBytes} bytes`, {
      bytes: bytes.length,
      maxBytes,
    });
  }
  const format = sniffFormat(bytes);
  if (format === null || !ACCEPTED_FORMATS.includes(format)) {
    const what = format === null ? 'unrecognised image format' : `unsupported image format '${format}'`;
    throw invalid(`${what}; accepted formats: ${ACCEPTED_FORMATS.join(', ')}`, {
      format: format ?? 'unknown',
      accepted: [...ACCEPTED_FORMATS],
    });
  }
  return format;
}

/** A displayed size checked against zero and the pixel limit (only the first frame counts: pages 1). */
function checkSize(width: number, height: number, format: RasterFormat, maxPixels: number): void {
  if (!(width > 0) || !(height > 0))
    throw invalid(`image has a zero dimension (${width ?? 0}x${height ?? 0})`, { format, width, height });
  if (width * height > maxPixels) throw tooManyPixels(width, height, maxPixels, { format });
}

/**
 * JPEGs libjpeg-turbo decodes in the worker: 8-bit baseline or progressive, grey or YCbCr/RGB, and no
 * profile to apply. CMYK, 12-bit, lossless and arithmetic-coded files stay with libvips, which handles
 * them (and their colour) fully.
 */
export function turboCanDecode(h: JpegHeader, applyIccProfile: boolean): boolean {
  return (
    (h.process === 'baseline' || h.process === 'progressive') &&
    h.precision === 8 &&
    (h.components === 1 || h.components === 3) &&
    !(applyIccProfile && h.hasIccProfile)
  );
}

/** The memory guards every sharp instance here carries. */
const guardOptions = (maxPixels: number): SharpOptions => ({
  // Refuses from the header, before any pixel buffer exists: the decompression-bomb guard.
  limitInputPixels: maxPixels,
  unlimited: false,
});

/**
 * sharp's decode: first frame, EXIF-oriented, 8-bit sRGB with exactly 3 channels. Alpha is dropped,
 * not flattened: cv2.imread(IMREAD_COLOR) and PIL convert('RGB'), which the YOLO reference loaders
 * use, keep the colour channels as they are. An embedded profile is applied as the image loads when
 * applyIccProfile is on, and ignored otherwise (as OpenCV does).
 *
 * An image at least twice the size the model takes (in both directions) is shrunk by that integer
 * factor here, by libvips (shrink-on-load and an antialiased reduce): a 12 MP photo then crosses to the
 * worker as 1 MP instead of 36 MB of fresh memory, and resample.ts does the rest of the resize. Images
 * with alpha are not (libvips would resize them premultiplied, blackening transparent pixels).
 */
async function decodeWithSharp(
  bytes: Uint8Array,
  format: RasterFormat,
  maxPixels: number,
  applyIccProfile: boolean,
  fit: (width: number, height: number) => { resizedWidth: number; resizedHeight: number },
): Promise<{ pixels: Uint8Array; width: number; height: number; shown: { width: number; height: number } }> {
  const fields: Record<string, unknown> = { format, bytes: bytes.length };
  const open = (ignoreIcc: boolean): Sharp =>
    sharp(bytes, {
      ...guardOptions(maxPixels),
      // Stream top to bottom: nothing here needs random access, and it keeps memory low.
      sequentialRead: true,
      // Truncated or corrupt pixel data is an error; mere warnings (odd but decodable files) are not.
      failOn: 'error',
      pages: 1,
      autoOrient: true,
      ignoreIcc,
    });
  let meta: Metadata;
  try {
    meta = await open(true).metadata();
  } catch (e) {
    throw await wrapDecodeError(e, bytes, format, maxPixels, fields);
  }
  if (meta.format !== SHARP_FORMAT[format]) {
    // The decoder libvips picked disagrees with the magic bytes: a polyglot or mislabelled file.
    throw invalid(`image looks like ${format} but decodes as ${String(meta.format)}`, { format, decoder: meta.format });
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  checkSize(width, height, format, maxPixels);
  const g = fit(width, height);
  const k = meta.hasAlpha ? 1 : Math.floor(Math.min(width / g.resizedWidth, height / g.resizedHeight));
  const out = k >= 2 ? { width: Math.round(width / k), height: Math.round(height / k) } : { width, height };
  try {
    const image = open(!(applyIccProfile && meta.hasProfile));
    if (k >= 2) image.resize({ ...out, fit: 'fill', kernel: 'linear' });
    const { data, info } = await image
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (
      info.channels !== 3 ||
      info.width !== out.width ||
      info.height !== out.height ||
      data.length !== out.width * out.height * 3
    ) {
      // Not the caller's fault: our pipeline produced something other than what it promises.
      throw new SightlineError('INTERNAL', 'decoding produced an unexpected pixel layout', {
        ...fields,
        width: info.width,
        height: info.height,
        channels: info.channels,
        length: data.length,
      });
    }
    // Not toUint8Array(): sharp 0.35.5 copies libvips' output into the Uint8Array but never frees the
    // original (src/pipeline.cc passes it to FreeCallback as the ignored first argument), leaking the
    // whole output. toBuffer() frees it on GC; its Buffer cannot be transferred to a worker, so it is
    // copied into one that can.
    return { pixels: new Uint8Array(data), ...out, shown: { width, height } };
  } catch (e) {
    throw await wrapDecodeError(e, bytes, format, maxPixels, fields);
  }
}

/**
 * Checks `bytes` against the limits, reads the header and decides who decodes: JPEGs libjpeg-turbo can
 * decode are passed on undecoded (a copy the worker can own); everything else is decoded here by
 * sharp. Geometry is computed from the displayed (EXIF-oriented) size.
 */
export async function prepareSource(
  bytes: Uint8Array,
  target: PrepareTarget,
  limits: PrepareLimits,
  options: PrepareOptions,
): Promise<PreparedSource> {
  const t0 = performance.now();
  const format = checkBytes(bytes, limits.maxBytes);
  const maxPixels = Math.max(1, Math.floor(limits.maxPixels));
  const letterbox = (w: number, h: number) =>
    computeLetterbox(w, h, target.width, target.height, target.spec.placement);

  const header = format === 'jpeg' ? readJpegHeader(bytes) : null;
  if (header?.process === 'progressive' && scansOver(bytes, header.scanStart, MAX_PROGRESSIVE_SCANS)) {
    throw invalid(`progressive JPEG has more than ${MAX_PROGRESSIVE_SCANS} scans; re-encode it`, {
      format,
      maxScans: MAX_PROGRESSIVE_SCANS,
    });
  }
  if (header && options.decoder !== 'sharp' && turboCanDecode(header, options.applyIccProfile)) {
    const shown = orientedSize(header.width, header.height, header.orientation);
    checkSize(shown.width, shown.height, format, maxPixels);
    return {
      source: {
        kind: 'jpeg',
        bytes: new Uint8Array(bytes),
        width: header.width,
        height: header.height,
        orientation: header.orientation,
        dctScaling: options.jpegDctScaling ?? true,
      },
      geometry: letterbox(shown.width, shown.height),
      format,
      decoder: 'libjpeg-turbo',
      decodeMs: performance.now() - t0,
    };
  }
  const img = await decodeWithSharp(bytes, format, maxPixels, options.applyIccProfile, letterbox);
  return {
    source: { kind: 'rgb', pixels: img.pixels, width: img.width, height: img.height, orientation: 1 },
    geometry: letterbox(img.shown.width, img.shown.height),
    format,
    decoder: 'sharp',
    decodeMs: performance.now() - t0,
  };
}
