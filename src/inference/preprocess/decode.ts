/**
 * Bytes → letterboxed HWC RGB uint8 pixels at the model's input size, with sharp. Every way the bytes
 * can be wrong ends as SightlineError('INVALID_INPUT'); sharp's own errors never escape raw. The float
 * conversion is left to toTensor, which runs in a worker thread.
 */
import sharp, { type Metadata, type OutputInfo, type Sharp, type SharpOptions } from 'sharp';
import { performance } from 'node:perf_hooks';
import { SightlineError } from '../../errors.js';
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import { computeLetterbox, padToLetterbox } from './letterbox.js';
import { sniffFormat, type RasterFormat } from './sniff.js';

/**
 * Formats we decode. 'heif' (HEVC-coded HEIC) is recognised by sniffFormat but refused: sharp's
 * prebuilt libheif has no HEVC decoder (sharp.format.heif.input.fileSuffix is ['.avif'] only), so
 * accepting it would only turn a clear refusal into an obscure decode error.
 */
export const ACCEPTED_FORMATS: readonly RasterFormat[] = ['jpeg', 'png', 'webp', 'gif', 'tiff', 'avif'];

export interface PreparedImage {
  /** HWC RGB uint8, exactly width*height*3 bytes, already letterboxed and padded. */
  pixels: Uint8Array;
  /** Equal to the target size. */
  width: number;
  height: number;
  /** Source size is the displayed size, after EXIF orientation. */
  geometry: LetterboxGeometry;
  format: RasterFormat;
  /** decodeMs: sniff + header/metadata; preprocessMs: the decode + resize + colour + pad pipeline. */
  timing: { decodeMs: number; preprocessMs: number };
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
   * Convert images with an embedded ICC profile to sRGB (as the reference detections were made).
   * false skips the lcms transform: what cv2.imread (the YOLO training loader) does, and faster on
   * camera JPEGs, but pixel values of non-sRGB photos shift. On coco128 neither choice changes mAP.
   */
  applyIccProfile: boolean;
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

/** First line of a sharp/libvips error, without a dangling colon: the rest is libvips' repeated trace. */
function sharpReason(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n', 1)[0].trim().replace(/:$/, '') || 'unknown decoder error';
}

/** A caller-facing diagnosis of a decoder failure; the decoder's own words follow in parentheses. */
function diagnose(reason: string): string {
  if (/premature end|truncat|unexpected end/i.test(reason)) return 'the data is truncated';
  if (/corrupt header|unsupported image format/i.test(reason)) return 'the header is corrupt or unreadable';
  return 'the data is corrupt';
}

const isPixelLimitError = (e: unknown): boolean => e instanceof Error && /pixel limit/i.test(e.message);

function tooManyPixels(width: number, height: number, maxPixels: number, fields: Record<string, unknown>): SightlineError {
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
async function pixelLimitError(bytes: Uint8Array, maxPixels: number, fields: Record<string, unknown>, cause: unknown): Promise<SightlineError> {
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
  const reason = sharpReason(e);
  return invalid(`${format} image could not be decoded: ${diagnose(reason)} (${reason})`, { ...fields, reason }, e);
}

/** Size, limit and format checks that need no decoder. */
function checkBytes(bytes: Uint8Array, maxBytes: number): RasterFormat {
  if (bytes.length === 0) throw invalid('image is empty (0 bytes)', { bytes: 0 });
  if (bytes.length > maxBytes) {
    throw invalid(`image is ${bytes.length} bytes, over the limit of ${maxBytes} bytes`, { bytes: bytes.length, maxBytes });
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

/** Displayed (EXIF-oriented) size from metadata, checked against zero and the pixel limit. */
function checkDimensions(meta: Metadata, format: RasterFormat, maxPixels: number): { width: number; height: number } {
  if (meta.format !== SHARP_FORMAT[format]) {
    // The decoder libvips picked disagrees with the magic bytes: a polyglot or mislabelled file.
    throw invalid(`image looks like ${format} but decodes as ${String(meta.format)}`, { format, decoder: meta.format });
  }
  const width = meta.autoOrient?.width ?? meta.width;
  const height = meta.autoOrient?.height ?? meta.height;
  if (!(width > 0) || !(height > 0)) {
    throw invalid(`image has a zero dimension (${width ?? 0}x${height ?? 0})`, { format, width, height });
  }
  // Only the first page/frame is decoded (pages: 1), so it alone counts against the limit.
  if (width * height > maxPixels) throw tooManyPixels(width, height, maxPixels, { format });
  return { width, height };
}

/** The memory guards every sharp instance here carries. */
const guardOptions = (maxPixels: number): SharpOptions => ({
  // Refuses from the header, before any pixel buffer exists: the decompression-bomb guard.
  limitInputPixels: maxPixels,
  unlimited: false,
});

/**
 * Alpha is dropped, not flattened: cv2.imread(IMREAD_COLOR) and PIL convert('RGB'), which the YOLO
 * reference loaders use, keep the colour channels as they are, so the model sees what it was
 * validated on. It must happen before the resize: sharp resizes alpha images premultiplied and
 * applies removeAlpha() afterwards, which would turn fully transparent pixels black. So alpha input
 * (only) takes a second pass: decode to raw sRGB at source size, then letterbox that.
 */
async function withoutAlpha(image: Sharp, maxPixels: number): Promise<Sharp> {
  const { data, info } = await image.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  return sharp(data, { ...guardOptions(maxPixels), raw: { width: info.width, height: info.height, channels: info.channels } });
}

/**
 * Where an embedded ICC profile is applied. libvips converts at load, on every source pixel, by
 * default. For 8-bit RGB photos (cameras and phones tag theirs Display P3 or Adobe RGB) the same
 * transform after the resize touches only the pixels the model sees: bus.jpg, 810x1080 → 480x640,
 * 21.5 → 16.1 ms of CPU, pixels within 0.16 of the at-load result on average (0-255 scale). Every
 * other image with a profile (CMYK, grey, 16-bit, alpha) keeps the at-load conversion.
 */
export type IccPlan = 'none' | 'after-resize' | 'on-load';

export function iccPlan(meta: Pick<Metadata, 'hasProfile' | 'space' | 'depth' | 'channels' | 'hasAlpha'>, apply: boolean): IccPlan {
  if (!apply || !meta.hasProfile) return 'none';
  return meta.space === 'srgb' && meta.depth === 'uchar' && meta.channels === 3 && !meta.hasAlpha ? 'after-resize' : 'on-load';
}

/**
 * Resize (linear, exact size), as the reference detections were made; the padding is added after, in
 * padToLetterbox, so no colour transform ever touches the pad value. iccAfterResize: convert from the
 * embedded profile to sRGB at the end of the pipeline (withIccProfile uses the embedded profile as the
 * source). toColourspace('srgb') turns grey, CMYK and 16-bit input into 8-bit sRGB with 3 bands; raw()
 * writes uchar.
 */
function resizePipeline(image: Sharp, g: LetterboxGeometry, iccAfterResize: boolean): Sharp {
  const p = image.removeAlpha().resize({ width: g.resizedWidth, height: g.resizedHeight, fit: 'fill', kernel: 'linear' });
  return (iccAfterResize ? p.withIccProfile('srgb') : p).toColourspace('srgb').raw();
}

/**
 * Decodes `bytes` and letterboxes them into target.width x target.height per target.spec: EXIF
 * orientation applied, first frame only, 8-bit sRGB with exactly 3 channels, resized with a linear
 * kernel then padded with spec.padValue (the pipeline that produced the reference detections, with an
 * embedded profile applied after the resize where iccPlan allows).
 */
export async function prepareImage(
  bytes: Uint8Array,
  target: PrepareTarget,
  limits: PrepareLimits,
  options: PrepareOptions = { applyIccProfile: true },
): Promise<PreparedImage> {
  const t0 = performance.now();
  const format = checkBytes(bytes, limits.maxBytes);
  const maxPixels = Math.max(1, Math.floor(limits.maxPixels));
  const fields: Record<string, unknown> = { format, bytes: bytes.length };

  const open = (ignoreIcc: boolean): Sharp =>
    sharp(bytes, {
      ...guardOptions(maxPixels),
      // Stream top to bottom: the resize needs no random access, and it keeps memory low.
      sequentialRead: true,
      // Truncated or corrupt pixel data is an error; mere warnings (odd but decodable files) are not.
      failOn: 'error',
      pages: 1,
      autoOrient: true,
      ignoreIcc,
    });
  // No conversion at load unless iccPlan says so below: the header decides where it happens.
  let image = open(true);

  let meta: Metadata;
  try {
    meta = await image.metadata();
  } catch (e) {
    throw await wrapDecodeError(e, bytes, format, maxPixels, fields);
  }
  const src = checkDimensions(meta, format, maxPixels);
  const geometry = computeLetterbox(src.width, src.height, target.width, target.height, target.spec.placement);
  const icc = iccPlan(meta, options.applyIccProfile);
  if (icc === 'on-load') image = open(false);
  const t1 = performance.now();

  let out: { data: Buffer; info: OutputInfo };
  try {
    const source = meta.hasAlpha ? await withoutAlpha(image, maxPixels) : image;
    // Not toUint8Array(): sharp 0.35.5 copies libvips' output into the Uint8Array but never frees the
    // original (src/pipeline.cc passes it to FreeCallback as the ignored first argument), leaking the
    // whole output, ~300 KB per 320x320 request. toBuffer() frees it on GC; its Buffer cannot be
    // transferred, and padToLetterbox copies it into a buffer that can.
    out = await resizePipeline(source, geometry, icc === 'after-resize').toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw await wrapDecodeError(e, bytes, format, maxPixels, fields);
  }

  const { data, info } = out;
  if (info.channels !== 3 || info.width !== geometry.resizedWidth || info.height !== geometry.resizedHeight || data.length !== info.width * info.height * 3) {
    // Not the caller's fault: our pipeline produced something other than what it promises.
    throw new SightlineError('INTERNAL', 'preprocessing produced an unexpected pixel layout', {
      ...fields,
      width: info.width,
      height: info.height,
      channels: info.channels,
      length: data.length,
      expected: { width: geometry.resizedWidth, height: geometry.resizedHeight, channels: 3 },
    });
  }
  const pixels = padToLetterbox(data, geometry, target.spec.padValue);
  const t2 = performance.now();

  return {
    pixels,
    width: target.width,
    height: target.height,
    geometry,
    format,
    timing: { decodeMs: t1 - t0, preprocessMs: t2 - t1 },
  };
}
