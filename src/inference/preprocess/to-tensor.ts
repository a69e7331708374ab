/**
 * The worker's half of preprocessing: decode a JPEG source with libjpeg-turbo (reusing the decoder's
 * buffer; at 1/2, 1/4 or 1/8 size in the IDCT when the model input is at most that fraction of the
 * image), then orientation, resize, padding and normalisation straight into the input tensor.
 */
import { performance } from 'node:perf_hooks';
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import { dctDenominator, type JpegDecoder } from './jpeg-turbo.js';
import { letterboxToTensor } from './resample.js';
import type { ImageSource } from './source.js';

export interface TensorTiming {
  /** libjpeg-turbo's decode (0 when sharp decoded in prepareSource). */
  decodeMs: number;
  /** Orientation, resize, padding and normalisation into the tensor. */
  preprocessMs: number;
}

export function sourceToTensor(
  source: ImageSource,
  g: LetterboxGeometry,
  spec: LetterboxSpec,
  out: Float32Array,
  decoder: JpegDecoder,
): TensorTiming {
  const t0 = performance.now();
  const denom =
    source.kind === 'jpeg' && source.dctScaling
      ? dctDenominator({ width: g.srcWidth, height: g.srcHeight }, { width: g.resizedWidth, height: g.resizedHeight })
      : 1;
  const rgb = decoder.decode(source, denom);
  const t1 = performance.now();
  letterboxToTensor(rgb, g, spec, out);
  return { decodeMs: t1 - t0, preprocessMs: performance.now() - t1 };
}
