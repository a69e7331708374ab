/**
 * Megvii YOLOX (official export): one output `[1, N, 5+C]`, N = one point per grid cell over
 * strides 8/16/32. Rows are [dx, dy, log w, log h, obj, C classes], obj and classes sigmoid-ed, the
 * box NOT decoded: cx = (dx+gx)·s, w = exp(log w)·s. Input is BGR 0-255, letterboxed top-left.
 */
import { SightlineError } from '../../errors.js';
import type { Candidates, DecodeOptions, LetterboxSpec, ModelMeta, TensorInfo } from '../types.js';
import {
  type AnchorGrid,
  buildAnchorGrid,
  CandidateBuffer,
  type CheckedFamily,
  fillClassMask,
  gridPoints,
  isDetectTask,
  rank3,
  rowsOf,
} from './common.js';
import { decodeRowMajor } from './row-major.js';

const HEAD = 5;

export const YOLOX_LETTERBOX: LetterboxSpec = Object.freeze({
  placement: 'top-left',
  padValue: 114,
  channelOrder: 'bgr',
  scale: 1, // raw 0-255: feeding /255 drops YOLOX's mAP to zero
  mean: [0, 0, 0] as const,
  std: [1, 1, 1] as const,
});

export class YoloxFamily implements CheckedFamily {
  readonly name = 'yolox' as const;
  readonly letterbox = YOLOX_LETTERBOX;

  private readonly out = new CandidateBuffer();
  private mask = new Uint8Array(0);
  /** The grid for the last input size; a model's input size never changes, so one is enough. */
  private grid: AnchorGrid | null = null;

  problem(outputs: readonly TensorInfo[], meta: ModelMeta, forced: boolean): string | null {
    const d = rank3(outputs);
    if (d === null) return 'expects one output [1, anchors, 5+classes]';
    const [n, ch] = d;
    if (!(ch > HEAD)) return `needs a known row width above 5, got ${ch}`;
    if (n !== -1 && n <= ch) return `anchors (${n}) must outnumber the row width (${ch})`;
    if (!forced && !isDetectTask(meta)) return `metadata task is '${meta.props.task}', not 'detect'`;
    const g = gridPoints(meta.inputWidth, meta.inputHeight);
    // even when forced, a count that is not one grid means the boxes cannot be decoded
    if (n !== -1 && g !== 0 && n !== g) {
      return `anchors (${n}) != grid cells of ${meta.inputWidth}x${meta.inputHeight} at strides 8/16/32 (${g})`;
    }
    if (!forced && (n === -1 || g === 0)) return 'anchor count or input size unknown: cannot tell YOLOX from YOLOv5';
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
    meta: ModelMeta,
    opts: DecodeOptions,
  ): Candidates {
    const numClasses = this.numClasses(outputs);
    const n = rowsOf(data[0], HEAD + numClasses, this.name);
    const grid = this.gridFor(meta.inputWidth, meta.inputHeight);
    if (grid.gx.length !== n) {
      throw new SightlineError(
        'INTERNAL',
        `yolox: output has ${n} anchors but a ${meta.inputWidth}x${meta.inputHeight} input has ${grid.gx.length} grid cells`,
        { anchors: n, gridCells: grid.gx.length },
      );
    }
    if (this.mask.length < numClasses) this.mask = new Uint8Array(numClasses);
    if (!fillClassMask(this.mask, numClasses, opts.classFilter)) {
      this.out.reset(0);
      return this.out.view();
    }
    decodeRowMajor(data[0], n, numClasses, opts, this.mask, this.out, grid);
    return this.out.view();
  }

  private gridFor(width: number, height: number): AnchorGrid {
    const g = this.grid;
    if (g !== null && g.width === width && g.height === height) return g;
    return (this.grid = buildAnchorGrid(width, height));
  }
}

export const createYoloxFamily = (): YoloxFamily => new YoloxFamily();
