/**
 * One suite for every family (the way Hono runs all its routers through one suite): each case
 * brings a tiny encoder that writes known boxes into that family's raw output layout; the suite
 * checks that decode() gives them back, and that thresholds, class filters, multi-label and shape
 * recognition behave the same way everywhere.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  createUltralyticsFamily,
  createYolov5Family,
  createYoloxFamily,
  type Family,
  resolveFamily,
} from '../../../src/inference/families/index.js';
import type {
  Candidates,
  DecodeOptions,
  FamilyName,
  LetterboxSpec,
  ModelMeta,
  TensorInfo,
} from '../../../src/inference/types.js';

/** A box to encode, in model-input pixels. `extra` adds a second class score at the same anchor. */
interface Truth {
  cx: number;
  cy: number;
  w: number;
  h: number;
  cls: number;
  score: number;
  extra?: { cls: number; score: number };
}

interface FamilyCase {
  name: FamilyName;
  create(): Family;
  letterbox: LetterboxSpec;
  outputs(meta: ModelMeta, numClasses: number): TensorInfo[];
  /** Writes `truths` at distinct anchors over a low-score background. */
  encode(truths: readonly Truth[], meta: ModelMeta, numClasses: number): Float32Array;
}

const STRIDES = [8, 16, 32];
/** (gx, gy, stride) of every anchor point, levels in stride order, row-major: written independently of src. */
function anchorPoints(w: number, h: number): { gx: number; gy: number; s: number }[] {
  const pts: { gx: number; gy: number; s: number }[] = [];
  for (const s of STRIDES)
    for (let y = 0; y < h / s; y++) for (let x = 0; x < w / s; x++) pts.push({ gx: x, gy: y, s });
  return pts;
}

/** Distinct anchor per truth, spread over the tensor so both ends are exercised. */
const anchorFor = (k: number, n: number): number => (k === 0 ? n - 1 : Math.floor((k * n) / 7));

const ultralyticsCase: FamilyCase = {
  name: 'ultralytics',
  create: createUltralyticsFamily,
  letterbox: {
    placement: 'center',
    padValue: 114,
    channelOrder: 'rgb',
    scale: 1 / 255,
    mean: [0, 0, 0],
    std: [1, 1, 1],
  },
  outputs: (m, c) => [{ name: 'output0', dims: [1, 4 + c, anchorPoints(m.inputWidth, m.inputHeight).length] }],
  encode(truths, m, c) {
    const n = anchorPoints(m.inputWidth, m.inputHeight).length;
    const t = new Float32Array((4 + c) * n);
    // channel-major: value (row, anchor) at row * n + anchor
    for (let i = 0; i < n; i++) {
      t[i] = 50;
      t[n + i] = 50;
      t[2 * n + i] = 10;
      t[3 * n + i] = 10;
      for (let k = 0; k < c; k++) t[(4 + k) * n + i] = 0.01;
    }
    truths.forEach((b, k) => {
      const i = anchorFor(k, n);
      t[i] = b.cx;
      t[n + i] = b.cy;
      t[2 * n + i] = b.w;
      t[3 * n + i] = b.h;
      t[(4 + b.cls) * n + i] = b.score;
      if (b.extra) t[(4 + b.extra.cls) * n + i] = b.extra.score;
    });
    return t;
  },
};

/** Row-major [N, 5+C] with obj × cls = score; obj fixed at 0.9 so the product is really exercised. */
function encodeRows(
  truths: readonly Truth[],
  n: number,
  c: number,
  box: (b: Truth, anchor: number) => [number, number, number, number],
): Float32Array {
  const width = 5 + c;
  const t = new Float32Array(n * width);
  // background: high class scores under a low objectness, so only obj × cls keeps them out
  for (let i = 0; i < n; i++) {
    t[i * width + 4] = 0.02;
    for (let k = 0; k < c; k++) t[i * width + 5 + k] = 0.5;
  }
  const obj = 0.9;
  truths.forEach((b, k) => {
    const i = anchorFor(k, n);
    const r = i * width;
    t.set(box(b, i), r);
    t[r + 4] = obj;
    for (let k = 0; k < c; k++) t[r + 5 + k] = 0.01;
    t[r + 5 + b.cls] = b.score / obj;
    if (b.extra) t[r + 5 + b.extra.cls] = b.extra.score / obj;
  });
  return t;
}

const yolov5Case: FamilyCase = {
  name: 'yolov5',
  create: createYolov5Family,
  letterbox: ultralyticsCase.letterbox,
  outputs: (m, c) => [{ name: 'output0', dims: [1, 3 * anchorPoints(m.inputWidth, m.inputHeight).length, 5 + c] }],
  encode: (truths, m, c) =>
    encodeRows(truths, 3 * anchorPoints(m.inputWidth, m.inputHeight).length, c, (b) => [b.cx, b.cy, b.w, b.h]),
};

const yoloxCase: FamilyCase = {
  name: 'yolox',
  create: createYoloxFamily,
  letterbox: { placement: 'top-left', padValue: 114, channelOrder: 'bgr', scale: 1, mean: [0, 0, 0], std: [1, 1, 1] },
  outputs: (m, c) => [{ name: 'output', dims: [1, anchorPoints(m.inputWidth, m.inputHeight).length, 5 + c] }],
  encode(truths, m, c) {
    const pts = anchorPoints(m.inputWidth, m.inputHeight);
    // inverse of cx = (dx + gx)·s, w = exp(logw)·s
    return encodeRows(truths, pts.length, c, (b, i) => {
      const { gx, gy, s } = pts[i];
      return [b.cx / s - gx, b.cy / s - gy, Math.log(b.w / s), Math.log(b.h / s)];
    });
  },
};

const CASES: readonly FamilyCase[] = [ultralyticsCase, yolov5Case, yoloxCase];

/** Non-square, so a swapped x/y in a grid or a transposed layout shows up. */
const META: ModelMeta = { props: {}, inputWidth: 320, inputHeight: 256 };
const NUM_CLASSES = 6;
const TRUTHS: readonly Truth[] = [
  { cx: 100, cy: 80, w: 40, h: 60, cls: 0, score: 0.9 },
  { cx: 250, cy: 200, w: 120, h: 90, cls: 3, score: 0.6 },
  { cx: 30.5, cy: 240.25, w: 12, h: 8, cls: 5, score: 0.3, extra: { cls: 2, score: 0.27 } },
  { cx: 160, cy: 128, w: 300, h: 240, cls: 2, score: 0.2 },
];

const opts = (o: Partial<DecodeOptions> = {}): DecodeOptions => ({
  confThreshold: 0.25,
  classFilter: null,
  multiLabel: false,
  ...o,
});

interface Row {
  box: number[];
  score: number;
  cls: number;
}
function rows(c: Candidates): Row[] {
  const out: Row[] = [];
  for (let i = 0; i < c.count; i++)
    out.push({ box: Array.from(c.boxes.subarray(i * 4, i * 4 + 4)), score: c.scores[i], cls: c.classes[i] });
  return out.sort((a, b) => b.score - a.score || a.cls - b.cls);
}
const expected = (truths: readonly Truth[]): Row[] =>
  truths
    .map((b) => ({ box: [b.cx - b.w / 2, b.cy - b.h / 2, b.cx + b.w / 2, b.cy + b.h / 2], score: b.score, cls: b.cls }))
    .sort((a, b) => b.score - a.score || a.cls - b.cls);

function assertRows(got: Row[], want: Row[], where: string): void {
  assert.equal(got.length, want.length, `${where}: count; got ${JSON.stringify(got)}`);
  got.forEach((g, i) => {
    const w = want[i];
    assert.equal(g.cls, w.cls, `${where}: class of #${i}`);
    assert.ok(Math.abs(g.score - w.score) < 1e-5, `${where}: score ${g.score} vs ${w.score}`);
    g.box.forEach((v, k) => assert.ok(Math.abs(v - w.box[k]) < 1e-3, `${where}: box ${g.box} vs ${w.box}`));
  });
}

for (const fc of CASES) {
  describe(`family contract: ${fc.name}`, () => {
    const outputs = fc.outputs(META, NUM_CLASSES);
    const data = [fc.encode(TRUTHS, META, NUM_CLASSES)];

    test('decode round-trips encoded boxes, scores and classes', () => {
      const f = fc.create();
      const c = f.decode(data, outputs, META, opts());
      assertRows(rows(c), expected(TRUTHS.filter((b) => b.score >= 0.25)), fc.name);
      assert.equal(c.boxes.length, c.count * 4, 'views are exactly count long');
    });

    test('confidence threshold keeps scores >= threshold and drops the rest', () => {
      const f = fc.create();
      assertRows(
        rows(f.decode(data, outputs, META, opts({ confThreshold: 0.6 }))),
        expected(TRUTHS.filter((b) => b.score >= 0.6)),
        'conf 0.6',
      );
      assertRows(rows(f.decode(data, outputs, META, opts({ confThreshold: 0.1 }))), expected(TRUTHS), 'conf 0.1');
      assert.equal(f.decode(data, outputs, META, opts({ confThreshold: 0.95 })).count, 0);
    });

    test('class filter keeps only the listed classes (applied to the best class)', () => {
      const f = fc.create();
      const only3 = f.decode(data, outputs, META, opts({ classFilter: new Set([3, 99]) }));
      assertRows(rows(only3), expected(TRUTHS.filter((b) => b.cls === 3)), 'filter {3}');
      // class 2 is only the runner-up at the third truth's anchor: not emitted in best-class mode
      assert.equal(f.decode(data, outputs, META, opts({ classFilter: new Set([2]) })).count, 0);
      assert.equal(f.decode(data, outputs, META, opts({ classFilter: new Set() })).count, 0);
    });

    test('multiLabel emits every class above the threshold at an anchor', () => {
      const f = fc.create();
      const c = f.decode(data, outputs, META, opts({ multiLabel: true }));
      const third = TRUTHS[2];
      const want = [...TRUTHS.filter((b) => b.score >= 0.25), { ...third, cls: 2, score: 0.27 }];
      assertRows(rows(c), expected(want), 'multi-label');
      const filtered = f.decode(data, outputs, META, opts({ multiLabel: true, classFilter: new Set([2]) }));
      assertRows(rows(filtered), expected([{ ...third, cls: 2, score: 0.27 }]), 'multi-label filter {2}');
    });

    test('buffers are reused without leaking stale candidates between calls', () => {
      const f = fc.create();
      const many = f.decode(data, outputs, META, opts({ confThreshold: 0.1 }));
      assert.equal(many.count, 4);
      const few = f.decode(data, outputs, META, opts({ confThreshold: 0.8 }));
      assert.equal(few.count, 1);
      assert.equal(few.scores.length, 1);
      const empty = f.decode([new Float32Array(data[0].length)], outputs, META, opts());
      assert.equal(empty.count, 0);
    });

    test('declares its letterbox and class count', () => {
      const f = fc.create();
      assert.equal(f.name, fc.name);
      assert.deepEqual({ ...f.letterbox, mean: [...f.letterbox.mean], std: [...f.letterbox.std] }, fc.letterbox);
      assert.equal(f.numClasses(outputs), NUM_CLASSES);
    });

    test('matches() holds for its own shapes only', () => {
      const f = fc.create();
      for (const other of CASES) {
        const shapes = other.outputs(META, NUM_CLASSES);
        assert.equal(
          f.matches(shapes, META),
          other.name === fc.name,
          `${fc.name}.matches(${other.name} shapes ${JSON.stringify(shapes)})`,
        );
      }
      assert.equal(f.matches([], META), false);
      assert.equal(f.matches([...outputs, ...outputs], META), false, 'two outputs');
      assert.equal(f.matches([{ name: 'x', dims: [2, ...outputs[0].dims.slice(1)] }], META), false, 'batch 2');
    });

    test('resolveFamily picks it from its shapes, and as an override', () => {
      assert.equal(resolveFamily(outputs, META).name, fc.name);
      assert.equal(resolveFamily(outputs, META, fc.name).name, fc.name);
    });
  });
}
