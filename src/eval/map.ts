/**
 * COCO-style detection metrics, pure: per image and class, predictions are matched greedily by
 * descending confidence to the highest-IoU unmatched ground truth of their class (IoU >= t), for
 * t = 0.50:0.05:0.95; AP is the mean of the 101-point interpolated precision envelope (pycocotools).
 * No crowd regions, area ranges or per-image caps: the caller passes what it wants counted (e.g. the
 * 300 boxes Ultralytics val keeps).
 */
import { SightlineError } from '../errors.js';
import { iouAt } from '../inference/nms/nms.js';

/** Predictions of one image: xyxy boxes (4 floats each), in the same pixels as the ground truth. */
export interface ImagePredictions {
  readonly boxes: Float32Array;
  readonly scores: Float32Array;
  readonly classes: Int32Array;
  readonly count: number;
}

/** Ground truth of one image: xyxy boxes in pixels. */
export interface ImageGroundTruth {
  readonly boxes: Float32Array;
  readonly classes: Int32Array;
  readonly count: number;
}

export interface ClassMetrics {
  readonly classId: number;
  readonly ap50: number;
  /** Mean AP over IoU 0.50:0.05:0.95. */
  readonly ap5095: number;
  readonly numGt: number;
}

export interface DetectionMetrics {
  /** Means over classes that have ground truth; a class with GT but no predictions counts as 0. */
  readonly map50: number;
  readonly map5095: number;
  /** Over all predictions with score >= confThreshold, matched at IoU 0.5 (micro-averaged). */
  readonly precision: number;
  readonly recall: number;
  /** Classes with ground truth, by class id. */
  readonly perClass: readonly ClassMetrics[];
  readonly numImages: number;
  readonly numGt: number;
}

export interface MetricsOptions {
  /** Confidence at which precision and recall are reported (default 0.25). */
  readonly confThreshold?: number;
}

/** 0.50, 0.55, ..., 0.95, computed from integers so 0.75 is exactly 0.75. */
export const IOU_THRESHOLDS: readonly number[] = Array.from({ length: 10 }, (_, i) => (50 + 5 * i) / 100);
const NT = IOU_THRESHOLDS.length;
const RECALL_POINTS = 101;

/** Per-class accumulation: every prediction's score and, per IoU threshold, whether it was a TP. */
interface ClassAcc {
  numGt: number;
  scores: number[];
  /** Bit t set: true positive at IOU_THRESHOLDS[t]. */
  tpBits: number[];
}

/** Indices 0..n-1 sorted by score desc, ties by index (stable, like pycocotools' mergesort). */
function sortDesc(scores: ArrayLike<number>, n: number): Uint32Array {
  const idx = new Uint32Array(n);
  for (let i = 0; i < n; i++) idx[i] = i;
  return idx.sort((a, b) => scores[b] - scores[a] || a - b);
}

function accFor(accs: Map<number, ClassAcc>, cls: number): ClassAcc {
  let a = accs.get(cls);
  if (a === undefined) {
    a = { numGt: 0, scores: [], tpBits: [] };
    accs.set(cls, a);
  }
  return a;
}

/** Greedy matching of one image; appends each prediction's score and TP bits to its class. */
function matchImage(p: ImagePredictions, g: ImageGroundTruth, accs: Map<number, ClassAcc>): void {
  for (let j = 0; j < g.count; j++) accFor(accs, g.classes[j]).numGt++;
  if (p.count === 0) return;
  // bit t of matched[j]: GT j already taken at threshold t
  const matched = new Uint16Array(g.count);
  const ious = new Float64Array(g.count);
  const order = sortDesc(p.scores, p.count);
  for (let r = 0; r < p.count; r++) {
    const i = order[r];
    const cls = p.classes[i];
    for (let j = 0; j < g.count; j++) ious[j] = g.classes[j] === cls ? iouAt(p.boxes, i, g.boxes, j) : -1;
    let bits = 0;
    for (let t = 0; t < NT; t++) {
      const bit = 1 << t;
      let best = -1;
      let bestIou = IOU_THRESHOLDS[t];
      for (let j = 0; j < g.count; j++) {
        if ((matched[j] & bit) === 0 && ious[j] >= bestIou) {
          bestIou = ious[j];
          best = j;
        }
      }
      if (best >= 0) {
        matched[best] |= bit;
        bits |= bit;
      }
    }
    const a = accFor(accs, cls);
    a.scores.push(p.scores[i]);
    a.tpBits.push(bits);
  }
}

/**
 * AP at one IoU threshold: precision made monotone (envelope from the right), sampled at recall
 * 0, 0.01, ..., 1 at the first point reaching each recall; unreachable recalls count as 0.
 */
function averagePrecision(
  order: Uint32Array,
  tpBits: readonly number[],
  bit: number,
  numGt: number,
  prec: Float64Array,
  rec: Float64Array,
): number {
  const n = order.length;
  let tp = 0;
  for (let r = 0; r < n; r++) {
    if (tpBits[order[r]] & bit) tp++;
    rec[r] = tp / numGt;
    prec[r] = tp / (r + 1);
  }
  for (let r = n - 2; r >= 0; r--) if (prec[r] < prec[r + 1]) prec[r] = prec[r + 1];
  let sum = 0;
  let r = 0;
  for (let k = 0; k < RECALL_POINTS; k++) {
    const target = k / (RECALL_POINTS - 1);
    while (r < n && rec[r] < target) r++;
    if (r === n) break;
    sum += prec[r];
  }
  return sum / RECALL_POINTS;
}

/** COCO-style mAP@0.5 and mAP@0.5:0.95 plus precision and recall at one confidence. */
export function evaluateDetections(
  predictions: readonly ImagePredictions[],
  groundTruths: readonly ImageGroundTruth[],
  opts: MetricsOptions = {},
): DetectionMetrics {
  if (predictions.length !== groundTruths.length) {
    throw new SightlineError(
      'INVALID_INPUT',
      `evaluation needs one ground truth per image: ${predictions.length} predictions, ${groundTruths.length} ground truths`,
    );
  }
  const conf = opts.confThreshold ?? 0.25;
  const accs = new Map<number, ClassAcc>();
  for (let k = 0; k < predictions.length; k++) matchImage(predictions[k], groundTruths[k], accs);

  const perClass: ClassMetrics[] = [];
  let numGt = 0;
  let predAtConf = 0;
  let tpAtConf = 0;
  let prec = new Float64Array(0);
  let rec = new Float64Array(0);
  for (const [classId, a] of [...accs].sort((x, y) => x[0] - y[0])) {
    const n = a.scores.length;
    for (let r = 0; r < n; r++) {
      if (a.scores[r] >= conf) {
        predAtConf++;
        if (a.tpBits[r] & 1) tpAtConf++;
      }
    }
    if (a.numGt === 0) continue; // classes without ground truth are left out of the means
    numGt += a.numGt;
    if (prec.length < n) {
      prec = new Float64Array(n);
      rec = new Float64Array(n);
    }
    const order = sortDesc(a.scores, n);
    let sum = 0;
    let ap50 = 0;
    for (let t = 0; t < NT; t++) {
      const ap = n === 0 ? 0 : averagePrecision(order, a.tpBits, 1 << t, a.numGt, prec, rec);
      if (t === 0) ap50 = ap;
      sum += ap;
    }
    perClass.push({ classId, ap50, ap5095: sum / NT, numGt: a.numGt });
  }
  const mean = (f: (c: ClassMetrics) => number): number =>
    perClass.length === 0 ? 0 : perClass.reduce((s, c) => s + f(c), 0) / perClass.length;
  return {
    map50: mean((c) => c.ap50),
    map5095: mean((c) => c.ap5095),
    precision: predAtConf === 0 ? 0 : tpAtConf / predAtConf,
    recall: numGt === 0 ? 0 : tpAtConf / numGt,
    perClass,
    numImages: predictions.length,
    numGt,
  };
}
