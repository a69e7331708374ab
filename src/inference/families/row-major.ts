/**
 * The decode loop shared by YOLOv5 and YOLOX: one row per anchor, `[box(4), obj, C class scores]`,
 * score = obj × class. Only the box arithmetic differs, selected by `grid`.
 */
import type { DecodeOptions } from '../types.js';
import type { AnchorGrid, CandidateBuffer } from './common.js';

const OBJ = 4;
const FIRST_CLASS = 5;

/** Decodes rows [0, n) of `t` into `out`. `grid` null: boxes are already cx,cy,w,h pixels (YOLOv5). */
export function decodeRowMajor(
  t: Float32Array,
  n: number,
  numClasses: number,
  opts: DecodeOptions,
  mask: Uint8Array,
  out: CandidateBuffer,
  grid: AnchorGrid | null,
): void {
  const width = FIRST_CLASS + numClasses;
  const conf = opts.confThreshold;
  const multi = opts.multiLabel;
  out.reset(multi ? n : Math.min(n, 4096));
  for (let i = 0, r = 0; i < n; i++, r += width) {
    const obj = t[r + OBJ];
    // class scores are sigmoid-ed (<= 1), so obj alone bounds the score: skip most rows here
    if (!(obj >= conf)) continue;
    let cx = t[r];
    let cy = t[r + 1];
    let w = t[r + 2];
    let h = t[r + 3];
    if (grid !== null) {
      const s = grid.stride[i];
      cx = (cx + grid.gx[i]) * s;
      cy = (cy + grid.gy[i]) * s;
      w = Math.exp(w) * s;
      h = Math.exp(h) * s;
    }
    const hw = w * 0.5;
    const hh = h * 0.5;
    const c0 = r + FIRST_CLASS;
    if (multi) {
      for (let c = 0; c < numClasses; c++) {
        const s = obj * t[c0 + c];
        if (s >= conf && mask[c] !== 0) out.push(cx - hw, cy - hh, cx + hw, cy + hh, s, c);
      }
      continue;
    }
    // argmax over all classes, then the filter (as YOLOv5 and the YOLOX demo do)
    let best = t[c0];
    let bestClass = 0;
    for (let c = 1; c < numClasses; c++) {
      const v = t[c0 + c];
      if (v > best) {
        best = v;
        bestClass = c;
      }
    }
    const s = obj * best;
    if (s >= conf && mask[bestClass] !== 0) out.push(cx - hw, cy - hh, cx + hw, cy + hh, s, bestClass);
  }
}
