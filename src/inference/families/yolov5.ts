/**
 * YOLOv5 (Ultralytics' earlier export): one output `[1, N, 5+C]` with N = 3 anchors × grid cells.
 * Rows are cx, cy, w, h (already decoded to input pixels), objectness, C class scores.
 */
import type { Candidates, DecodeOptions, ModelMeta, TensorInfo } from '../types.js';
import {
  CandidateBuffer,
  type CheckedFamily,
  fillClassMask,
  gridPoints,
  isDetectTask,
  rank3,
  rowsOf,
  ULTRALYTICS_LETTERBOX,
} from './common.js';
import { decodeRowMajor } from './row-major.js';

const HEAD = 5;
/** YOLOv5 predicts three anchor boxes per grid cell; this is what tells it from YOLOX. */
export const YOLOV5_ANCHORS_PER_CELL = 3;

export class Yolov5Family implements CheckedFamily {
  readonly name = 'yolov5' as const;
  readonly letterbox = ULTRALYTICS_LETTERBOX;

  private readonly out = new CandidateBuffer();
  private mask = new Uint8Array(0);

  problem(outputs: readonly TensorInfo[], meta: ModelMeta, forced: boolean): string | null {
    const d = rank3(outputs);
    if (d === null) return 'expects one output [1, anchors, 5+classes]';
    const [n, ch] = d;
    if (!(ch > HEAD)) return `needs a known row width above 5, got ${ch}`;
    if (n !== -1 && n <= ch) return `anchors (${n}) must outnumber the row width (${ch})`;
    if (forced) return null; // boxes come decoded, so any anchor count can be decoded
    if (!isDetectTask(meta)) return `metadata task is '${meta.props.task}', not 'detect'`;
    const g = gridPoints(meta.inputWidth, meta.inputHeight);
    if (n === -1 || g === 0) return 'anchor count or input size unknown: cannot tell YOLOv5 from YOLOX';
    const want = YOLOV5_ANCHORS_PER_CELL * g;
    if (n !== want) return `anchors (${n}) != 3 × grid cells of ${meta.inputWidth}x${meta.inputHeight} (${want})`;
    return null;
  }

  matches(outputs: readonly TensorInfo[], meta: ModelMeta): boolean {
    return this.problem(outputs, meta, false) === null;
  }

  numClasses(outputs: readonly TensorInfo[]): number {
    return outputs[0].dims[2] - HEAD;
  }

  decode(
    data: readonly Float32Array[],
    outputs: readonly TensorInfo[],
    _meta: ModelMeta,
    opts: DecodeOptions,
  ): Candidates {
    const numClasses = this.numClasses(outputs);
    const n = rowsOf(data[0], HEAD + numClasses, this.name);
    if (this.mask.length < numClasses) this.mask = new Uint8Array(numClasses);
    if (!fillClassMask(this.mask, numClasses, opts.classFilter)) {
      this.out.reset(0);
      return this.out.view();
    }
    decodeRowMajor(data[0], n, numClasses, opts, this.mask, this.out, null);
    return this.out.view();
  }
}

export const createYolov5Family = (): Yolov5Family => new Yolov5Family();
