/**
 * Decoded pixels → the model's input tensor in one pass: EXIF orientation, bilinear resize, letterbox
 * padding, channel order and normalisation, written straight into the NCHW float32 tensor. Runs in the
 * inference worker for every request, so it allocates nothing per pixel and touches each output
 * value once; the rows run in WebAssembly SIMD (resample.wat, about twice as fast) when the pixels and
 * the tensor are in the worker's arena (arena.ts), in the JavaScript twin below otherwise.
 *
 * The resize is OpenCV's INTER_LINEAR (pixel centres aligned, two taps per axis, no antialiasing):
 * what Ultralytics' LetterBox and the YOLOX demo call at inference time, so the model sees what it was
 * validated with.
 */
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';
import { MAX_TABLE_COLUMNS, type TensorArena } from './arena.js';
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
export function orientationStrides(
  o: Orientation,
  width: number,
  height: number,
): { base: number; du: number; dv: number } {
  const row = width * 3;
  const lastRow = (height - 1) * row;
  const lastCol = (width - 1) * 3;
  switch (o) {
    case 1:
      return { base: 0, du: 3, dv: row };
    case 2:
      return { base: lastCol, du: -3, dv: row };
    case 3:
      return { base: lastRow + lastCol, du: -3, dv: -row };
    case 4:
      return { base: lastRow, du: 3, dv: -row };
    case 5:
      return { base: 0, du: row, dv: 3 };
    case 6:
      return { base: lastRow, du: -row, dv: 3 };
    case 7:
      return { base: lastRow + lastCol, du: -row, dv: -3 };
    case 8:
      return { base: lastCol, du: row, dv: -3 };
  }
}

/**
 * tensor = pixel * mul + add per source channel (R, G, B), and the plane each channel goes to: plane 0
 * holds R for RGB and B for BGR; plane 1 is always G. mean and std are in the tensor's channel order.
 */
function affine(spec: LetterboxSpec): {
  mul: [number, number, number];
  add: [number, number, number];
  plane: [number, number, number];
} {
  const { scale, mean, std } = spec;
  const plane: [number, number, number] = spec.channelOrder === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  const mul = plane.map((p) => scale / std[p]) as [number, number, number];
  const add = plane.map((p) => -mean[p] / std[p]) as [number, number, number];
  return { mul, add, plane };
}

/**
 * Source taps for one axis, as cv2.resize INTER_LINEAR computes them: centre-aligned, clamped at the
 * edges. i0/i1 are indices into the displayed axis, w the weight of i1.
 */
interface Taps {
  i0: Int32Array;
  i1: Int32Array;
  w: Float32Array;
}

function taps(src: number, dst: number): Taps {
  const i0 = new Int32Array(dst);
  const i1 = new Int32Array(dst);
  const w = new Float32Array(dst);
  const scale = src / dst;
  for (let x = 0; x < dst; x++) {
    let f = (x + 0.5) * scale - 0.5;
    let i = Math.floor(f);
    if (i < 0) {
      i = 0;
      f = 0;
    }
    if (i >= src - 1) {
      i = src - 1;
      f = i;
    }
    i0[x] = i;
    i1[x] = Math.min(i + 1, src - 1);
    w[x] = f - i;
  }
  return { i0, i1, w };
}

/** Fills plane rows [y0, y1) x columns [x0, x1) with one value per plane. */
function fillRect(
  out: Float32Array,
  g: LetterboxGeometry,
  values: readonly number[],
  x0: number,
  x1: number,
  y0: number,
  y1: number,
): void {
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
 * computed from the displayed (oriented) size of the source `img` is, or was shrunk from. When the
 * pixels and the tensor both lie in `arena`, the rows run in its SIMD kernel (resample.wat), else here.
 */
export function letterboxToTensor(
  img: RgbImage,
  g: LetterboxGeometry,
  spec: LetterboxSpec,
  out: Float32Array,
  arena?: TensorArena,
): void {
  const plane = g.dstWidth * g.dstHeight;
  if (out.length !== 3 * plane) throw new RangeError(`tensor holds ${out.length} floats, expected ${3 * plane}`);
  if (img.pixels.length < img.width * img.height * 3)
    throw new RangeError(
      `expected ${img.width * img.height * 3} bytes for ${img.width}x${img.height}x3, got ${img.pixels.length}`,
    );
  const shown = img.orientation >= 5 ? { w: img.height, h: img.width } : { w: img.width, h: img.height };
  // The image may be the source itself or a shrunk copy of it (decode.ts): either way it has the
  // source's proportions, within the rounding of its sides.
  if (Math.abs(shown.w * g.srcHeight - shown.h * g.srcWidth) > Math.max(g.srcWidth, g.srcHeight)) {
    throw new RangeError(`geometry is for ${g.srcWidth}x${g.srcHeight}, image shows ${shown.w}x${shown.h}`);
  }

  const { mul, add, plane: to } = affine(spec);
  // Pad values per plane (fillRect takes them in plane order).
  const pad = [0, 0, 0];
  for (let c = 0; c < 3; c++) pad[to[c]!] = spec.padValue * mul[c]! + add[c]!;
  const rw = g.resizedWidth;
  const rh = g.resizedHeight;
  fillRect(out, g, pad, 0, g.dstWidth, 0, g.padTop);
  fillRect(out, g, pad, 0, g.dstWidth, g.padTop + rh, g.dstHeight);
  fillRect(out, g, pad, 0, g.padLeft, g.padTop, g.padTop + rh);
  fillRect(out, g, pad, g.padLeft + rw, g.dstWidth, g.padTop, g.padTop + rh);

  const { base, du, dv } = orientationStrides(img.orientation, img.width, img.height);
  const cols = taps(shown.w, rw);
  const rows = taps(shown.h, rh);
  const rgb = { mul, add, plane: [to[0] * plane, to[1] * plane, to[2] * plane] as const };
  const px = img.pixels;
  if (arena && rw <= MAX_TABLE_COLUMNS && arena.holds(px) && arena.holds(out)) {
    // Byte offsets into the arena: the kernel addresses its memory directly.
    const t = arena.tables(rw);
    fillColumns(cols, du, t.c0, t.dc, t.wx);
    const [mR, mG, mB] = mul;
    const [aR, aG, aB] = add;
    const [pR, pG, pB] = rgb.plane;
    const px0 = px.byteOffset + base;
    for (let y = 0; y < rh; y++) {
      const o = out.byteOffset + ((g.padTop + y) * g.dstWidth + g.padLeft) * 4;
      const dr = (rows.i1[y]! - rows.i0[y]!) * dv;
      const r0 = px0 + rows.i0[y]! * dv;
      arena.row(
        rw,
        t.at[0],
        t.at[1],
        t.at[2],
        r0,
        dr,
        rows.w[y]!,
        o + pR * 4,
        o + pG * 4,
        o + pB * 4,
        mR,
        mG,
        mB,
        aR,
        aG,
        aB,
      );
    }
    return;
  }
  const c0 = new Int32Array(rw);
  const dc = new Int32Array(rw);
  const wx = new Float32Array(rw);
  fillColumns(cols, du, c0, dc, wx);
  resampleRows(px, base, dv, rows, { c0, dc, wx }, rgb, g, out);
}

/** Per output column: byte offset of its first source column, the step to its second, and its weight. */
function fillColumns(cols: Taps, du: number, c0: Int32Array, dc: Int32Array, wx: Float32Array): void {
  for (let x = 0; x < c0.length; x++) {
    c0[x] = cols.i0[x]! * du;
    dc[x] = (cols.i1[x]! - cols.i0[x]!) * du;
    wx[x] = cols.w[x]!;
  }
}

/** The same arithmetic as resample.wat's `row`, in JavaScript, for every output row. */
function resampleRows(
  px: Uint8Array,
  base: number,
  dv: number,
  rows: Taps,
  cols: { c0: Int32Array; dc: Int32Array; wx: Float32Array },
  rgb: { mul: readonly number[]; add: readonly number[]; plane: readonly [number, number, number] },
  g: LetterboxGeometry,
  out: Float32Array,
): void {
  // Locals, not lookups, in the loop below: it runs once per output pixel. Each channel is two
  // horizontal lerps and a vertical one (the same bilinear weights, fewer multiplications).
  const { c0, dc, wx: cw } = cols;
  const [mR, mG, mB] = rgb.mul as [number, number, number];
  const [aR, aG, aB] = rgb.add as [number, number, number];
  const rw = g.resizedWidth;
  const dstW = g.dstWidth;
  for (let y = 0; y < g.resizedHeight; y++) {
    const r0 = base + rows.i0[y]! * dv;
    const dr = (rows.i1[y]! - rows.i0[y]!) * dv;
    const wy = rows.w[y]!;
    const o = (g.padTop + y) * dstW + g.padLeft;
    const oR = o + rgb.plane[0];
    const oG = o + rgb.plane[1];
    const oB = o + rgb.plane[2];
    for (let x = 0; x < rw; x++) {
      const wx = cw[x]!;
      const a = r0 + c0[x]!;
      const b = a + dc[x]!;
      const c = a + dr;
      const d = c + dc[x]!;
      let p = px[a]!;
      let q = px[c]!;
      let t0 = p + (px[b]! - p) * wx;
      let t1 = q + (px[d]! - q) * wx;
      out[oR + x] = (t0 + (t1 - t0) * wy) * mR + aR;
      p = px[a + 1]!;
      q = px[c + 1]!;
      t0 = p + (px[b + 1]! - p) * wx;
      t1 = q + (px[d + 1]! - q) * wx;
      out[oG + x] = (t0 + (t1 - t0) * wy) * mG + aG;
      p = px[a + 2]!;
      q = px[c + 2]!;
      t0 = p + (px[b + 2]! - p) * wx;
      t1 = q + (px[d + 2]! - q) * wx;
      out[oB + x] = (t0 + (t1 - t0) * wy) * mB + aB;
    }
  }
}

/**
 * Every `step`-th pixel of the resized image inside `tensor` (starting half a step in, the grid drift
 * monitoring samples), back as RGB uint8: a thumbnail for input features, so they need neither the
 * full pixels nor this module's tensor layout.
 */
export function sampleLetterboxed(
  tensor: Float32Array,
  g: LetterboxGeometry,
  spec: LetterboxSpec,
  step: number,
): { pixels: Uint8Array; width: number; height: number } {
  const { mul, add, plane: from } = affine(spec);
  const plane = g.dstWidth * g.dstHeight;
  const x0 = g.padLeft + Math.min(step >> 1, g.resizedWidth - 1);
  const y0 = g.padTop + Math.min(step >> 1, g.resizedHeight - 1);
  const width = Math.ceil((g.padLeft + g.resizedWidth - x0) / step);
  const height = Math.ceil((g.padTop + g.resizedHeight - y0) / step);
  const pixels = new Uint8Array(width * height * 3);
  // Channel c (R, G, B) was written to plane from[c]; read it back from there.
  for (let c = 0; c < 3; c++) {
    const inv = 1 / mul[c]!;
    const off = add[c]!;
    const at = from[c]! * plane;
    for (let j = 0, y = y0; j < height; j++, y += step) {
      for (let i = 0, x = x0; i < width; i++, x += step) {
        const v = Math.round((tensor[at + y * g.dstWidth + x]! - off) * inv);
        pixels[(j * width + i) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return { pixels, width, height };
}
