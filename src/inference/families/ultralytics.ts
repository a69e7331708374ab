/**
 * Ultralytics YOLOv8 / YOLO11 detect head: one output `[1, 4+C, N]`, channel-major. Rows 0-3 are
 * cx, cy, w, h in input pixels; rows 4.. are sigmoid-ed class scores; there is no objectness row.
 */
import type { Candidates, DecodeOptions, ModelMeta, TensorInfo } from '../types.js';
import {
  CandidateBuffer,
  type CheckedFamily,
  fillClassMask,
  isDetectTask,
  rank3,
  rowsOf,
  ULTRALYTICS_LETTERBOX,
} from './common.js';

const BOX_ROWS = 4;

export class UltralyticsFamily implements CheckedFamily {
  readonly name = 'ultralytics' as const;
  readonly letterbox = ULTRALYTICS_LETTERBOX;

  private readonly out = new CandidateBuffer();
  private best = new Float32Array(0);
  private bestClass = new Int32Array(0);
  private mask = new Uint8Array(0);

  problem(outputs: readonly TensorInfo[], meta: ModelMeta, forced: boolean): string | null {
    const d = rank3(outputs);
    if (d === null) return 'expects one output [1, 4+classes, anchors]';
    const [ch, n] = d;
    if (!(ch > BOX_ROWS)) return `needs a known channel count above 4, got ${ch}`;
    // channels-first is what tells this layout from YOLOv5/YOLOX's [1, anchors, 5+classes]
    if (n !== -1 && n <= ch) return `anchors (${n}) must outnumber channels (${ch})`;
    if (!forced && !isDetectTask(meta)) return `metadata task is '${meta.props.task}', not 'detect'`;
    return null;
  }

  matches(outputs: readonly TensorInfo[], meta: ModelMeta): boolean {
    return this.problem(outputs, meta, false) === null;
  }

  numClasses(outputs: readonly TensorInfo[]): number {
    return outputs[0].dims[1] - BOX_ROWS;
  }

  decode(
    data: readonly Float32Array[],
    outputs: readonly TensorInfo[],
    _meta: ModelMeta,
    opts: DecodeOptions,
  ): Candidates {
    const t = data[0];
    const numClasses = this.numClasses(outputs);
    const n = rowsOf(t, BOX_ROWS + numClasses, this.name);
    if (this.mask.length < numClasses) this.mask = new Uint8Array(numClasses);
    const out = this.out;
    if (!fillClassMask(this.mask, numClasses, opts.classFilter)) {
      out.reset(0);
      return out.view();
    }
    if (opts.multiLabel) this.decodeMulti(t, n, numClasses, opts.confThreshold);
    else this.decodeBest(t, n, numClasses, opts.confThreshold);
    return out.view();
  }

  /**
   * Best class per anchor. The tensor is channel-major, so sweeping one class row at a time reads
   * memory sequentially; the running max lives in a reused Float32Array.
   */
  private decodeBest(t: Float32Array, n: number, numClasses: number, conf: number): void {
    if (this.best.length < n) {
      this.best = new Float32Array(n);
      this.bestClass = new Int32Array(n);
    }
    const best = this.best;
    const bestClass = this.bestClass;
    best.set(t.subarray(BOX_ROWS * n, (BOX_ROWS + 1) * n));
    bestClass.fill(0, 0, n);
    for (let c = 1; c < numClasses; c++) {
      const off = (BOX_ROWS + c) * n;
      for (let i = 0; i < n; i++) {
        const v = t[off + i];
        if (v > best[i]) {
          best[i] = v;
          bestClass[i] = c;
        }
      }
    }
    // Ultralytics applies the class filter to the argmax over all classes, so do the same
    const mask = this.mask;
    const out = this.out;
    out.reset(n);
    const n2 = 2 * n;
    const n3 = 3 * n;
    for (let i = 0; i < n; i++) {
      const s = best[i];
      if (!(s >= conf) || mask[bestClass[i]] === 0) continue;
      const cx = t[i];
      const cy = t[n + i];
      const hw = t[n2 + i] * 0.5;
      const hh = t[n3 + i] * 0.5;
      out.push(cx - hw, cy - hh, cx + hw, cy + hh, s, bestClass[i]);
    }
  }

  /** Every allowed class above the threshold becomes a candidate (Ultralytics val's multi_label). */
  private decodeMulti(t: Float32Array, n: number, numClasses: number, conf: number): void {
    const mask = this.mask;
    const out = this.out;
    out.reset(n);
    const n2 = 2 * n;
    const n3 = 3 * n;
    for (let c = 0; c < numClasses; c++) {
      if (mask[c] === 0) continue;
      const off = (BOX_ROWS + c) * n;
      for (let i = 0; i < n; i++) {
        const s = t[off + i];
        if (!(s >= conf)) continue;
        const cx = t[i];
        const cy = t[n + i];
        const hw = t[n2 + i] * 0.5;
        const hh = t[n3 + i] * 0.5;
        out.push(cx - hw, cy - hh, cx + hw, cy + hh, s, c);
      }
    }
  }
}

export const createUltralyticsFamily = (): UltralyticsFamily => new UltralyticsFamily();
