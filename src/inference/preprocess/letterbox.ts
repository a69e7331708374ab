/**
 * Letterbox geometry: where a source image lands inside the model input, and the inverse mapping of
 * boxes back to source pixels. Pure arithmetic, no pixels.
 */
import type { LetterboxGeometry, LetterboxSpec } from '../types.js';

/** Python's round(): half to even. Ultralytics computes sizes with it, so Math.round would differ on .5. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const diff = x - f;
  if (diff > 0.5) return f + 1;
  if (diff < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

function assertSize(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

const clampSide = (v: number, dst: number): number => Math.min(dst, Math.max(1, v));

/**
 * 'center' follows Ultralytics LetterBox (round sizes, split padding with the ±0.1 trick);
 * 'top-left' follows the YOLOX demo (floor sizes, image at (0,0), pad right and bottom).
 * Upscaling is allowed in both, as in their inference code.
 */
export function computeLetterbox(
  srcW: number,
  srcH: number,
  dstW: number,
  dstH: number,
  placement: LetterboxSpec['placement'],
): LetterboxGeometry {
  assertSize('srcW', srcW);
  assertSize('srcH', srcH);
  assertSize('dstW', dstW);
  assertSize('dstH', dstH);
  const r = Math.min(dstH / srcH, dstW / srcW);
  const base = { srcWidth: srcW, srcHeight: srcH, dstWidth: dstW, dstHeight: dstH };

  if (placement === 'top-left') {
    const resizedWidth = clampSide(Math.floor(srcW * r), dstW);
    const resizedHeight = clampSide(Math.floor(srcH * r), dstH);
    return {
      ...base,
      resizedWidth,
      resizedHeight,
      padLeft: 0,
      padTop: 0,
      padRight: dstW - resizedWidth,
      padBottom: dstH - resizedHeight,
    };
  }

  const resizedWidth = clampSide(roundHalfEven(srcW * r), dstW);
  const resizedHeight = clampSide(roundHalfEven(srcH * r), dstH);
  const dw = (dstW - resizedWidth) / 2;
  const dh = (dstH - resizedHeight) / 2;
  const padLeft = roundHalfEven(dw - 0.1);
  const padTop = roundHalfEven(dh - 0.1);
  // Ultralytics' right = round(dw + 0.1) always equals dst - resized - left; derive it so the sum is exact.
  return {
    ...base,
    resizedWidth,
    resizedHeight,
    padLeft,
    padTop,
    padRight: dstW - resizedWidth - padLeft,
    padBottom: dstH - resizedHeight - padTop,
  };
}

/**
 * Maps `count` boxes (x1,y1,x2,y2 in model-input pixels) back to source pixels, in place, clipped to
 * the source image. Per-axis scales, so a non-uniform rounding of the resized size is undone exactly.
 */
export function mapBoxesToSource(boxes: Float32Array, count: number, g: LetterboxGeometry): void {
  if (count * 4 > boxes.length) throw new RangeError(`boxes holds ${boxes.length / 4} boxes, asked to map ${count}`);
  const sx = g.srcWidth / g.resizedWidth;
  const sy = g.srcHeight / g.resizedHeight;
  const px = g.padLeft;
  const py = g.padTop;
  const maxX = g.srcWidth;
  const maxY = g.srcHeight;
  for (let i = 0, n = count * 4; i < n; i += 4) {
    const x1 = (boxes[i] - px) * sx;
    const y1 = (boxes[i + 1] - py) * sy;
    const x2 = (boxes[i + 2] - px) * sx;
    const y2 = (boxes[i + 3] - py) * sy;
    boxes[i] = x1 < 0 ? 0 : x1 > maxX ? maxX : x1;
    boxes[i + 1] = y1 < 0 ? 0 : y1 > maxY ? maxY : y1;
    boxes[i + 2] = x2 < 0 ? 0 : x2 > maxX ? maxX : x2;
    boxes[i + 3] = y2 < 0 ? 0 : y2 > maxY ? maxY : y2;
  }
}
