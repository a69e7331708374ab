/**
 * Greedy non-maximum suppression over typed arrays: candidates in, kept indices out (by score,
 * highest first). Pure apart from scratch buffers reused between calls (it never yields, so reuse is
 * safe within one thread).
 */
import type { Candidates, NmsOptions } from '../types.js';

/** Like Ultralytics' max_nms: at most this many top-scoring candidates enter the greedy pass. */
export const MAX_NMS_CANDIDATES = 30_000;

/** Sort keys pack (score rank, index) into one float64: 32 score bits + 21 index bits = 53. */
const INDEX_SPACE = 2 ** 21;
const INDEX_MAX = INDEX_SPACE - 1;
/** Per-class chains are used when class ids are small non-negative ints (always, for our models). */
const MAX_CHAIN_CLASS = 1 << 16;

let keys = new Float64Array(0);
let order = new Uint32Array(0);
let keptBoxes = new Float64Array(0); // x1, y1, x2, y2, area per kept box
let keptPrev = new Int32Array(0); // previous kept box of the same class, or -1
let lastOfClass = new Int32Array(0);

/** IoU of two xyxy boxes given as 4-number arrays; 0 when the union is empty. */
export function iou(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return iouAt(a, 0, b, 0);
}

/** IoU of box `i` of `a` and box `j` of `b` (4 numbers per box, xyxy). */
export function iouAt(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number): number {
  const ai = i * 4;
  const bj = j * 4;
  const iw = Math.min(a[ai + 2], b[bj + 2]) - Math.max(a[ai], b[bj]);
  const ih = Math.min(a[ai + 3], b[bj + 3]) - Math.max(a[ai + 1], b[bj + 1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union =
    Math.max(0, a[ai + 2] - a[ai]) * Math.max(0, a[ai + 3] - a[ai + 1]) +
    Math.max(0, b[bj + 2] - b[bj]) * Math.max(0, b[bj + 3] - b[bj + 1]) -
    inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Writes candidate indices into `order` by descending score (ties: lower index first) and returns
 * how many, capped at MAX_NMS_CANDIDATES. A comparator-free Float64Array sort of packed keys is
 * several times faster than sorting indices with a comparator.
 */
function sortByScore(scores: Float32Array, n: number): number {
  if (order.length < n) order = new Uint32Array(Math.max(n, 1024));
  const m = Math.min(n, MAX_NMS_CANDIDATES);
  if (n > INDEX_SPACE) {
    // too many to pack: sort indices directly (only reachable with absurd candidate counts)
    const idx = new Uint32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    idx.sort((x, y) => scores[y] - scores[x] || x - y);
    order.set(idx.subarray(0, m));
    return m;
  }
  if (keys.length < n) keys = new Float64Array(Math.max(n, 1024));
  // the raw bits of a float32 order like the floats once the sign is folded in
  const bits = new Uint32Array(scores.buffer, scores.byteOffset, n);
  for (let i = 0; i < n; i++) {
    const u = bits[i];
    let rank: number;
    if (scores[i] !== scores[i])
      rank = 0; // NaN sorts last
    else rank = u & 0x80000000 ? ~u >>> 0 : (u | 0x80000000) >>> 0;
    keys[i] = -(rank * INDEX_SPACE + (INDEX_MAX - i)); // negated: ascending sort = best first
  }
  const k = keys.subarray(0, n);
  k.sort();
  for (let r = 0; r < m; r++) order[r] = INDEX_MAX - (-k[r] % INDEX_SPACE);
  return m;
}

/**
 * Greedy NMS. A candidate is kept unless it overlaps an already kept box (of the same class, unless
 * `agnostic`) with IoU > iouThreshold. Stops once maxDetections are kept. Returns indices into `c`,
 * highest score first.
 */
export function nms(c: Candidates, opts: NmsOptions): Uint32Array {
  const n = c.count;
  const maxDet = Math.floor(opts.maxDetections);
  if (n === 0 || !(maxDet > 0)) return new Uint32Array(0);
  const m = sortByScore(c.scores, n);
  const cap = Math.min(m, maxDet);
  const boxes = c.boxes;
  const classes = c.classes;
  const thr = opts.iouThreshold;

  // class-wise: each kept box links to the previous kept box of its class, so a candidate is only
  // compared with its own class (cheaper than Ultralytics' coordinate offset trick, same result)
  let chained = !opts.agnostic;
  let maxClass = -1;
  if (chained) {
    for (let i = 0; i < n; i++) {
      const cl = classes[i];
      if (cl < 0 || cl >= MAX_CHAIN_CLASS) {
        chained = false;
        break;
      }
      if (cl > maxClass) maxClass = cl;
    }
    if (chained) {
      if (lastOfClass.length <= maxClass) lastOfClass = new Int32Array(maxClass + 1);
      lastOfClass.fill(-1, 0, maxClass + 1);
    }
  }
  const compareClass = !opts.agnostic && !chained;
  if (keptPrev.length < cap) {
    keptPrev = new Int32Array(cap);
    keptBoxes = new Float64Array(cap * 5);
  }
  const kb = keptBoxes;
  const out = new Uint32Array(cap);
  let k = 0;

  for (let r = 0; r < m && k < cap; r++) {
    const i = order[r];
    const b = i * 4;
    const x1 = boxes[b];
    const y1 = boxes[b + 1];
    const x2 = boxes[b + 2];
    const y2 = boxes[b + 3];
    const area = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
    const cl = classes[i];
    let suppressed = false;
    // walk the class chain (class-wise) or every kept box, newest first
    let j = chained ? lastOfClass[cl] : k - 1;
    while (j >= 0) {
      if (!compareClass || classes[out[j]] === cl) {
        const o = j * 5;
        const iw = Math.min(x2, kb[o + 2]) - Math.max(x1, kb[o]);
        if (iw > 0) {
          const ih = Math.min(y2, kb[o + 3]) - Math.max(y1, kb[o + 1]);
          if (ih > 0) {
            const inter = iw * ih;
            // iou > thr without a division; an empty union never suppresses
            if (inter > thr * (area + kb[o + 4] - inter)) {
              suppressed = true;
              break;
            }
          }
        }
      }
      j = chained ? keptPrev[j] : j - 1;
    }
    if (suppressed) continue;
    const o = k * 5;
    kb[o] = x1;
    kb[o + 1] = y1;
    kb[o + 2] = x2;
    kb[o + 3] = y2;
    kb[o + 4] = area;
    if (chained) {
      keptPrev[k] = lastOfClass[cl];
      lastOfClass[cl] = k;
    }
    out[k++] = i;
  }
  return k === cap ? out : out.slice(0, k);
}
