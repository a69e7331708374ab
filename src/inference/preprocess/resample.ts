/**
 * Decoded pixels → the model's input tensor in one pass: EXIF orientation, bilinear resize, letterbox
 * padding, channel order and normalisation, written straight into the NCHW float32 tensor. Runs in the
 * inference worker for every request, so it allocates nothing per pixel and touches each output
 * value once.
 *
 * The resize is OpenCV's INTER_LINEAR (pixel centres aligned, two taps per axis, no antialiasing):
 * what Ultralytics' LetterBox and the YOLOX demo call at inference time, so the model sees what it was
 * validated with.
 */
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import type { Orientation } from './jpeg-header.js';

/** Decoded RGB pixels as stored (before EXIF orientation): width*height*3 bytes, rows top to bottom. */
export interface RgbImage {
  readonly pixels: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly orientation: Orientation;
}

/**
 * Where displayed pixel (u, v) lives in the stored image: byte offset base + u*du + v*dv. One table
 * covers all eight EXIF orientations (mirrors, rotations, transpositions).
 */
export function orientationStrides(o: Orientation, width: number, height: number): { base: number; du: number; dv: number } {
  const row = width * 3;
  const lastRow = (height - 1) * row;
  const lastCol = (width - 1) * 3;
  switch (o) {
    case 1: return { base: 0, du: 3, dv: row };
    case 2: return { base: lastCol, du: -3, dv: row };
    case 3: return { base: lastRow + lastCol, du: -3, dv: -row };
    case 4: return { base: lastRow, du: 3, dv: -row };
    case 5: return { base: 0, du: row, dv: 3 };
    case 6: return { base: lastRow, du: -row, dv: 3 };
    case 7: return { base: lastRow + lastCol, du: -row, dv: -3 };
    case 8: return { base: lastCol, du: row, dv: -3 };
  }
}

/** Per-plane multiplier and offset: tensor = pixel * mul[c] + add[c], planes in the tensor's channel order. */
function affine(spec: LetterboxSpec): { mul: [number, number, number]; add: [number, number, number]; src: [number, number, number] } {
  const { scale, mean, std } = spec;
  // Plane 0 reads R for RGB and B for BGR; plane 1 is always G.
  const src: [number, number, number] = spec.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  return {
    mul: [scale / std[0], scale / std[1], scale / std[2]],
    add: [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]],
    src,
  };
}

/**
 * Source taps for one axis, as cv2.resize INTER_LINEAR computes them: centre-aligned, clamped at the
 * edges. i0/i1 are indices into the displayed axis, w the weight of i1.
 */
function taps(src: number, dst: number): { i0: Int32Array; i1: Int32Array; w: Float32Array } {
  const i0 = new Int32Array(dst);
  const i1 = new Int32Array(dst);
  const w = new Float32Array(dst);
  const scale = src / dst;
  for (let x = 0; x < dst; x++) {
    let f = (x + 0.5) * scale - 0.5;
    let i = Math.floor(f);
    if (i < 0) (i = 0), (f = 0);
    if (i >= src - 1) (i = src - 1), (f = i);
    i0[x] = i;
    i1[x] = Math.min(i + 1, src - 1);
    w[x] = f - i;
  }
  return { i0, i1, w };
}

/** Fills plane rows [y0, y1) x columns [x0, x1) with one value per plane. */
function fillRect(out: Float32Array, g: LetterboxGeometry, values: readonly number[], x0: number, x1: number, y0: number, y1: number): void {
  if (x1 <= x0 || y1 <= y0) return;
  const plane = g.dstWidth * g.dstHeight;
  for (let c = 0; c < 3; c++) {
    const v = values[c]!;
    for (let y = y0; y < y1; y++) {
      const at = c * plane + y * g.dstWidth;
      out.fill(v, at + x0, at + x1);
    }
  }
}

/**
 * Writes `img`, oriented, resized to g.resizedWidth x g.resizedHeight and placed at (padLeft, padTop),
 * into `out` (3 x dstHeight x dstWidth), with the pad value everywhere else. `g` must have been
 * computed from the displayed (oriented) size of `img`.
 */
export function letterboxToTensor(img: RgbImage, g: LetterboxGeometry, spec: LetterboxSpec, out: Float32Array): void {
  const plane = g.dstWidth * g.dstHeight;
  if (out.length !== 3 * plane) throw new RangeError(`tensor holds ${out.length} floats, expected ${3 * plane}`);
  if (img.pixels.length < img.width * img.height * 3) throw new RangeError(`expected ${img.width * img.height * 3} bytes for ${img.width}x${img.height}x3, got ${img.pixels.length}`);
  const shown = img.orientation >= 5 ? { w: img.height, h: img.width } : { w: img.width, h: img.height };
  if (shown.w !== g.srcWidth || shown.h !== g.srcHeight) throw new RangeError(`geometry is for ${g.srcWidth}x${g.srcHeight}, image shows ${shown.w}x${shown.h}`);

  const { mul, add, src: ch } = affine(spec);
  const pad = [0, 1, 2].map((c) => spec.padValue * mul[c]! + add[c]!);
  const rw = g.resizedWidth;
  const rh = g.resizedHeight;
  fillRect(out, g, pad, 0, g.dstWidth, 0, g.padTop);
  fillRect(out, g, pad, 0, g.dstWidth, g.padTop + rh, g.dstHeight);
  fillRect(out, g, pad, 0, g.padLeft, g.padTop, g.padTop + rh);
  fillRect(out, g, pad, g.padLeft + rw, g.dstWidth, g.padTop, g.padTop + rh);

  const { base, du, dv } = orientationStrides(img.orientation, img.width, img.height);
  const cols = taps(shown.w, rw);
  const rows = taps(shown.h, rh);
  const c0 = new Int32Array(rw);
  const c1 = new Int32Array(rw);
  for (let x = 0; x < rw; x++) (c0[x] = cols.i0[x]! * du), (c1[x] = cols.i1[x]! * du);
  const px = img.pixels;
  const [m0, m1, m2] = mul;
  const [a0, a1, a2] = add;
  const [s0, s1, s2] = ch;
  const p1 = plane;
  const p2 = 2 * plane;
  for (let y = 0; y < rh; y++) {
    const r0 = base + rows.i0[y]! * dv;
    const r1 = base + rows.i1[y]! * dv;
    const wy = rows.w[y]!;
    const wy0 = 1 - wy;
    let o = (g.padTop + y) * g.dstWidth + g.padLeft;
    for (let x = 0; x < rw; x++, o++) {
      const wx = cols.w[x]!;
      const wx0 = 1 - wx;
      const w00 = wx0 * wy0;
      const w01 = wx * wy0;
      const w10 = wx0 * wy;
      const w11 = wx * wy;
      const a = r0 + c0[x]!;
      const b = r0 + c1[x]!;
      const c = r1 + c0[x]!;
      const d = r1 + c1[x]!;
      out[o] = (px[a + s0]! * w00 + px[b + s0]! * w01 + px[c + s0]! * w10 + px[d + s0]! * w11) * m0 + a0;
      out[o + p1] = (px[a + s1]! * w00 + px[b + s1]! * w01 + px[c + s1]! * w10 + px[d + s1]! * w11) * m1 + a1;
      out[o + p2] = (px[a + s2]! * w00 + px[b + s2]! * w01 + px[c + s2]! * w10 + px[d + s2]! * w11) * m2 + a2;
    }
  }
}

/**
 * Every `step`-th pixel of the resized image inside `tensor` (starting half a step in, the grid drift
 * monitoring samples), back as RGB uint8: a thumbnail for input features, so they need neither the
 * full pixels nor this module's tensor layout.
 */
export function sampleLetterboxed(tensor: Float32Array, g: LetterboxGeometry, spec: LetterboxSpec, step: number): { pixels: Uint8Array; width: number; height: number } {
  const { mul, add, src } = affine(spec);
  const plane = g.dstWidth * g.dstHeight;
  const x0 = g.padLeft + Math.min(step >> 1, g.resizedWidth - 1);
  const y0 = g.padTop + Math.min(step >> 1, g.resizedHeight - 1);
  const width = Math.ceil((g.padLeft + g.resizedWidth - x0) / step);
  const height = Math.ceil((g.padTop + g.resizedHeight - y0) / step);
  const pixels = new Uint8Array(width * height * 3);
  // Plane c holds source channel src[c]; write it back to that channel.
  for (let c = 0; c < 3; c++) {
    const inv = 1 / mul[c]!;
    const off = add[c]!;
    const dst = src[c]!;
    for (let j = 0, y = y0; j < height; j++, y += step) {
      for (let i = 0, x = x0; i < width; i++, x += step) {
        const v = Math.round((tensor[c * plane + y * g.dstWidth + x]! - off) * inv);
        pixels[(j * width + i) * 3 + dst] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return { pixels, width, height };
}
