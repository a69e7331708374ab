/**
 * Pieces shared by the family decoders: a growable candidate buffer, the class-filter mask, the
 * anchor-grid arithmetic and the shape checks. Pure; no I/O.
 */
import { SightlineError } from '../../errors.js';
import type { Candidates, LetterboxSpec, ModelMeta, TensorInfo } from '../types.js';
import type { Family } from './family.js';

/** The strides of the three YOLO detection heads (P3, P4, P5). */
export const YOLO_STRIDES: readonly number[] = [8, 16, 32];

/** Ultralytics and YOLOv5: centred letterbox, grey 114, RGB, 0-1. */
export const ULTRALYTICS_LETTERBOX: LetterboxSpec = Object.freeze({
  placement: 'center',
  padValue: 114,
  channelOrder: 'rgb',
  scale: 1 / 255,
  mean: [0, 0, 0] as const,
  std: [1, 1, 1] as const,
});

/**
 * Candidate storage reused between decodes of one family instance. It grows by doubling, so a decode
 * allocates only when it sees more candidates than ever before.
 */
export class CandidateBuffer {
  boxes = new Float32Array(0);
  scores = new Float32Array(0);
  classes = new Int32Array(0);
  count = 0;

  /** Starts a decode; `hint` is the expected upper bound, to avoid growing mid-loop. */
  reset(hint: number): void {
    this.count = 0;
    if (hint > this.scores.length) this.resize(hint);
  }

  /** Appends one xyxy box; the decoders call this for survivors of the threshold only. */
  push(x1: number, y1: number, x2: number, y2: number, score: number, cls: number): void {
    const n = this.count;
    if (n === this.scores.length) this.resize(Math.max(1024, n * 2));
    const b = n * 4;
    const boxes = this.boxes;
    boxes[b] = x1;
    boxes[b + 1] = y1;
    boxes[b + 2] = x2;
    boxes[b + 3] = y2;
    this.scores[n] = score;
    this.classes[n] = cls;
    this.count = n + 1;
  }

  /** Views of exactly `count` candidates; valid until the next reset() of this buffer. */
  view(): Candidates {
    const n = this.count;
    return {
      count: n,
      boxes: this.boxes.subarray(0, n * 4),
      scores: this.scores.subarray(0, n),
      classes: this.classes.subarray(0, n),
    };
  }

  private resize(cap: number): void {
    const n = this.count;
    const boxes = new Float32Array(cap * 4);
    const scores = new Float32Array(cap);
    const classes = new Int32Array(cap);
    boxes.set(this.boxes.subarray(0, n * 4));
    scores.set(this.scores.subarray(0, n));
    classes.set(this.classes.subarray(0, n));
    this.boxes = boxes;
    this.scores = scores;
    this.classes = classes;
  }
}

/**
 * Fills `mask` (length >= numClasses) with 1 for allowed classes. Returns false when no class is
 * allowed, so the caller can return no candidates without touching the tensor.
 */
export function fillClassMask(mask: Uint8Array, numClasses: number, filter: ReadonlySet<number> | null): boolean {
  if (filter === null) {
    mask.fill(1, 0, numClasses);
    return numClasses > 0;
  }
  mask.fill(0, 0, numClasses);
  let any = false;
  for (const c of filter) {
    if (Number.isInteger(c) && c >= 0 && c < numClasses) {
      mask[c] = 1;
      any = true;
    }
  }
  return any;
}

/** Feature-map side for one stride; ceil matches a stride-2 conv stack on sizes not divisible by 32. */
const cells = (side: number, stride: number): number => Math.ceil(side / stride);

/** Anchor points of one 8/16/32 grid (one per cell), or 0 when the input size is unknown. */
export function gridPoints(width: number, height: number): number {
  if (!(width > 0 && height > 0)) return 0;
  let n = 0;
  for (const s of YOLO_STRIDES) n += cells(width, s) * cells(height, s);
  return n;
}

/** Grid offsets and strides per anchor point, level by level, row-major (y then x) in each level. */
export interface AnchorGrid {
  readonly width: number;
  readonly height: number;
  readonly gx: Float32Array;
  readonly gy: Float32Array;
  readonly stride: Float32Array;
}

export function buildAnchorGrid(width: number, height: number): AnchorGrid {
  const n = gridPoints(width, height);
  const gx = new Float32Array(n);
  const gy = new Float32Array(n);
  const stride = new Float32Array(n);
  let k = 0;
  for (const s of YOLO_STRIDES) {
    const h = cells(height, s);
    const w = cells(width, s);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++, k++) {
        gx[k] = x;
        gy[k] = y;
        stride[k] = s;
      }
    }
  }
  return { width, height, gx, gy, stride };
}

/** `[1, a, b]` with a known or symbolic (-1) batch of one; otherwise null. */
export function rank3(outputs: readonly TensorInfo[]): readonly [number, number] | null {
  if (outputs.length !== 1) return null;
  const d = outputs[0].dims;
  if (d.length !== 3 || !(d[0] === 1 || d[0] === -1)) return null;
  return [d[1], d[2]];
}

/** Ultralytics writes `task`; a pose/segment/obb head has a similar shape but means something else. */
export function isDetectTask(meta: ModelMeta): boolean {
  const task = meta.props.task;
  return task === undefined || task === 'detect';
}

/** Checks the tensor length against the row width and returns the number of rows. */
export function rowsOf(data: Float32Array, rowWidth: number, family: string): number {
  if (rowWidth <= 0 || data.length % rowWidth !== 0) {
    throw new SightlineError(
      'INTERNAL',
      `${family}: output has ${data.length} values, not a multiple of ${rowWidth} per anchor`,
      { family, length: data.length, rowWidth },
    );
  }
  return data.length / rowWidth;
}

/**
 * What every family here implements beyond the public contract: why outputs do not fit. With
 * `forced` (an operator override) only the impossible is refused; otherwise ambiguity is refused too.
 */
export interface CheckedFamily extends Family {
  problem(outputs: readonly TensorInfo[], meta: ModelMeta, forced: boolean): string | null;
}
