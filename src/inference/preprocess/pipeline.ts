/**
 * The whole preprocessing of one image, in the two halves the request path splits it into:
 * prepareSource (calling thread: limits, header, sharp when needed) and sourceToTensor (the inference
 * worker: libjpeg-turbo, orientation, resize, padding, normalisation), with the fallback to sharp for
 * JPEGs libjpeg-turbo refuses. prepareTensor runs both halves in the calling thread, with the same
 * code, for tools and measurements.
 */
import type { LetterboxGeometry } from '../types.js';
import {
  prepareSource,
  type PreparedSource,
  type PrepareLimits,
  type PrepareOptions,
  type PrepareTarget,
} from './decode.js';
import { TensorArena } from './arena.js';
import { JpegDecoder, turboRefused } from './jpeg-turbo.js';
import type { RasterFormat } from './sniff.js';
import type { Decoder } from './source.js';
import { sourceToTensor, type TensorTiming } from './to-tensor.js';

/**
 * Prepares `bytes` and hands the result to `use`; when libjpeg-turbo refuses the JPEG (use throws its
 * refusal), prepares it again with sharp, which either decodes it or says what is wrong with it.
 */
export async function withDecoderFallback<T>(
  bytes: Uint8Array,
  target: PrepareTarget,
  limits: PrepareLimits,
  options: PrepareOptions,
  use: (p: PreparedSource) => Promise<T>,
): Promise<T> {
  const first = await prepareSource(bytes, target, limits, options);
  try {
    return await use(first);
  } catch (e) {
    if (!turboRefused(e)) throw e;
    return use(await prepareSource(bytes, target, limits, { ...options, decoder: 'sharp' }));
  }
}

export interface PreparedTensor {
  tensor: Float32Array;
  geometry: LetterboxGeometry;
  format: RasterFormat;
  decoder: Decoder;
  /** decodeMs: header checks and whichever decoder ran; preprocessMs: resample.ts. */
  timing: TensorTiming;
}

let shared: { decoder: JpegDecoder; arena: TensorArena } | null = null;

/**
 * Both halves in the calling thread, exactly the worker's computation (tools, tests, benchmarks). The
 * tensor is a view into this thread's arena, valid until the next call: `copy` (the default) returns
 * it in a buffer of its own (`out` when it has the right length), which is what callers that keep or
 * compare tensors need; false skips that copy (the benchmark, measuring the worker's own cost).
 */
export function prepareTensor(
  bytes: Uint8Array,
  target: PrepareTarget,
  limits: PrepareLimits,
  options: PrepareOptions,
  out?: Float32Array,
  copy = true,
): Promise<PreparedTensor> {
  shared ??= { decoder: new JpegDecoder(), arena: new TensorArena() };
  const { decoder, arena } = shared;
  const n = 3 * target.width * target.height;
  return withDecoderFallback(bytes, target, limits, options, async (p) => {
    const t = sourceToTensor(p.source, p.geometry, target.spec, decoder, arena);
    let tensor = t.tensor;
    if (copy) {
      tensor = out?.length === n ? out : new Float32Array(n);
      tensor.set(t.tensor);
    }
    return {
      tensor,
      geometry: p.geometry,
      format: p.format,
      decoder: p.decoder,
      timing: { decodeMs: p.decodeMs + t.timing.decodeMs, preprocessMs: t.timing.preprocessMs },
    };
  });
}
