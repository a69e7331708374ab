/**
 * Two answers for one image compared box by box: what a shadow run measures between the active
 * version and a candidate. Pure; per image, no state.
 *
 * Boxes are matched greedily by class: of every (active, candidate) pair of the same class with IoU at
 * least 0.5, the pair with the highest IoU is matched first, then the next among the boxes still free,
 * and so on. Agreement is matched / max(active boxes, candidate boxes): 1 when both answers have the
 * same boxes (or none at all), 0 when no box matches.
 */
import { iouAt } from '../inference/nms/nms.js';
import type { Detection } from '../inference/index.js';

/** Pairs below this IoU never match. */
const MATCH_IOU = 0.5;

/** One class's boxes in one comparison. */
export interface ClassDiff {
  readonly matched: number;
  /** Boxes only the active version found: what the candidate misses. */
  readonly activeOnly: number;
  /** Boxes only the candidate found: what it adds. */
  readonly candidateOnly: number;
}

export interface ImageComparison {
  readonly activeBoxes: number;
  readonly candidateBoxes: number;
  readonly matched: number;
  /** matched / max(activeBoxes, candidateBoxes); 1 when both are empty. */
  readonly agreement: number;
  /** Sum over matched pairs of candidate confidence − active confidence (mean: divide by matched). */
  readonly confidenceShiftSum: number;
  /** By class id; only classes with at least one box in either answer. */
  readonly classes: ReadonlyMap<number, ClassDiff>;
}

type Box = Pick<Detection, 'classId' | 'confidence' | 'xMin' | 'yMin' | 'xMax' | 'yMax'>;

const flat = (ds: readonly Box[]): Float64Array => {
  const out = new Float64Array(ds.length * 4);
  ds.forEach((d, i) => out.set([d.xMin, d.yMin, d.xMax, d.yMax], i * 4));
  return out;
};

export function compareDetections(active: readonly Box[], candidate: readonly Box[]): ImageComparison {
  const a = flat(active);
  const c = flat(candidate);
  const pairs: { i: number; j: number; iou: number }[] = [];
  for (let i = 0; i < active.length; i++) {
    for (let j = 0; j < candidate.length; j++) {
      if (active[i]!.classId !== candidate[j]!.classId) continue;
      const iou = iouAt(a, i, c, j);
      if (iou >= MATCH_IOU) pairs.push({ i, j, iou });
    }
  }
  // Highest IoU first; ties in input order, so the result never depends on the sort's stability.
  pairs.sort((x, y) => y.iou - x.iou || x.i - y.i || x.j - y.j);
  const usedA = new Uint8Array(active.length);
  const usedC = new Uint8Array(candidate.length);
  const classes = new Map<number, { matched: number; activeOnly: number; candidateOnly: number }>();
  const of = (cls: number) => {
    let e = classes.get(cls);
    if (!e) classes.set(cls, (e = { matched: 0, activeOnly: 0, candidateOnly: 0 }));
    return e;
  };
  let matched = 0;
  let shift = 0;
  for (const p of pairs) {
    if (usedA[p.i] || usedC[p.j]) continue;
    usedA[p.i] = usedC[p.j] = 1;
    matched++;
    shift += candidate[p.j]!.confidence - active[p.i]!.confidence;
    of(active[p.i]!.classId).matched++;
  }
  active.forEach((d, i) => usedA[i] || of(d.classId).activeOnly++);
  candidate.forEach((d, j) => usedC[j] || of(d.classId).candidateOnly++);
  const most = Math.max(active.length, candidate.length);
  return {
    activeBoxes: active.length,
    candidateBoxes: candidate.length,
    matched,
    agreement: most === 0 ? 1 : matched / most,
    confidenceShiftSum: shift,
    classes,
  };
}
