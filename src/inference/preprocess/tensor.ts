/**
 * HWC RGB uint8 pixels → NCHW float32 tensor (batch 1). Runs for every request inside a worker, so it
 * is one pass over the pixels with a precomputed multiplier and offset per channel: no per-pixel calls
 * or divisions. (Measured: faster than 256-entry lookup tables, whose extra loads cost more than a
 * multiply-add.)
 */
import type { LetterboxSpec } from '../types.js';

/**
 * Converts `pixels` (HWC, RGB, 3 channels, width*height*3 bytes) to an NCHW float32 tensor in
 * spec.channelOrder with value (pixel * scale - mean[c]) / std[c], computed as pixel * mul[c] + add[c].
 * Reuses `out` when it has exactly 3*width*height elements, else allocates.
 */
export function toTensor(
  pixels: Uint8Array,
  width: number,
  height: number,
  spec: LetterboxSpec,
  out?: Float32Array,
): Float32Array {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0) {
    throw new RangeError(`toTensor: bad size ${width}x${height}`);
  }
  const n = width * height;
  if (pixels.length !== n * 3) {
    throw new RangeError(`toTensor: expected ${n * 3} bytes for ${width}x${height}x3, got ${pixels.length}`);
  }
  const dst = out && out.length === n * 3 ? out : new Float32Array(n * 3);
  const { scale, mean, std } = spec;
  const mul0 = scale / std[0];
  const mul1 = scale / std[1];
  const mul2 = scale / std[2];
  const add0 = -mean[0] / std[0];
  const add1 = -mean[1] / std[1];
  const add2 = -mean[2] / std[2];
  // Tensor plane 0 reads R for RGB and B for BGR; plane 2 the other way round; plane 1 is always G.
  const bgr = spec.channelOrder === 'bgr';
  const o0 = bgr ? 2 : 0;
  const o2 = bgr ? 0 : 2;
  const n2 = 2 * n;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    dst[i] = pixels[j + o0] * mul0 + add0;
    dst[n + i] = pixels[j + 1] * mul1 + add1;
    dst[n2 + i] = pixels[j + o2] * mul2 + add2;
  }
  return dst;
}
