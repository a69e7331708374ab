/**
 * The worker's half of preprocessing: decode a JPEG source with libjpeg-turbo (at 1/2, 1/4 or 1/8 size
 * in the IDCT when the model input is at most that fraction of the image), then orientation, resize,
 * padding and normalisation straight into the input tensor. Pixels and tensor live in the thread's
 * arena (arena.ts), where the resample runs in WebAssembly SIMD.
 */
import { performance } from 'node:perf_hooks';
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import type { TensorArena } from './arena.js';
import { dctDenominator, type JpegDecoder } from './jpeg-turbo.js';
import { letterboxToTensor, type RgbImage } from './resample.js';
import type { ImageSource } from './source.js';

export interface TensorTiming {
  /** libjpeg-turbo's decode (0 when sharp decoded in prepareSource). */
  decodeMs: number;
  /** Orientation, resize, padding and normalisation into the tensor. */
  preprocessMs: number;
}

/**
 * The model input for `source`, as a view into `arena`: valid until the arena's next use (the caller
 * runs the model on it, or copies it).
 */
export function sourceToTensor(
  source: ImageSource,
  g: LetterboxGeometry,
  spec: LetterboxSpec,
  decoder: JpegDecoder,
  arena: TensorArena,
): { tensor: Float32Array; timing: TensorTiming } {
  const t0 = performance.now();
  const floats = 3 * g.dstWidth * g.dstHeight;
  let img: RgbImage;
  let tensor: Float32Array;
  if (source.kind === 'jpeg') {
    const denom = source.dctScaling
      ? dctDenominator({ width: g.srcWidth, height: g.srcHeight }, { width: g.resizedWidth, height: g.resizedHeight })
      : 1;
    const size = decoder.decodedSize(source, denom);
    const views = arena.reserve(floats, size.width * size.height * 3);
    tensor = views.tensor;
    img = decoder.decode(source, denom, views.pixels ?? undefined);
  } else {
    // sharp's pixels arrive in a buffer of their own: one copy into the arena buys the faster resample.
    const views = arena.reserve(floats, source.pixels.length);
    tensor = views.tensor;
    if (views.pixels) {
      views.pixels.set(source.pixels);
      img = { ...source, pixels: views.pixels };
    } else img = source;
  }
  const t1 = performance.now();
  letterboxToTensor(img, g, spec, tensor, arena);
  return { tensor, timing: { decodeMs: t1 - t0, preprocessMs: performance.now() - t1 } };
}
