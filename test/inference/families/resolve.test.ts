/** Family resolution from the real models' output shapes (DATA.md), overrides, and class names. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SightlineError } from '../../../src/errors.js';
import { resolveFamily, resolveNames } from '../../../src/inference/families/index.js';
import type { ModelMeta, TensorInfo } from '../../../src/inference/types.js';

const meta = (size: number, props: Record<string, string> = {}): ModelMeta => ({
  props,
  inputWidth: size,
  inputHeight: size,
});
const one = (name: string, dims: number[]): TensorInfo[] => [{ name, dims }];

const isUnsupported =
  (...needles: string[]) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof SightlineError, `expected SightlineError, got ${String(e)}`);
    assert.equal(e.code, 'UNSUPPORTED_MODEL');
    for (const n of needles) assert.ok(e.message.includes(n), `message lacks '${n}': ${e.message}`);
    return true;
  };

describe('resolveFamily', () => {
  test('the real models from DATA.md resolve to their families', () => {
    assert.equal(resolveFamily(one('output0', [1, 84, 8400]), meta(640, { task: 'detect' })).name, 'ultralytics');
    assert.equal(resolveFamily(one('output0', [1, 84, 2100]), meta(320, { task: 'detect' })).name, 'ultralytics');
    assert.equal(resolveFamily(one('output', [1, 3549, 85]), meta(416)).name, 'yolox');
    // YOLOv5s at 640: 3 anchors × (80² + 40² + 20²)
    assert.equal(resolveFamily(one('output0', [1, 25200, 85]), meta(640)).name, 'yolov5');
    assert.equal(resolveFamily(one('output', [1, 8400, 85]), meta(640)).name, 'yolox');
  });

  test("nanodet's six outputs are refused with every output named", () => {
    const nanodet: TensorInfo[] = [
      { name: 'cls_score0', dims: [1600, 80] },
      { name: 'bbox_pred0', dims: [400, 80] },
      { name: 'cls_score1', dims: [100, 80] },
      { name: 'bbox_pred1', dims: [1600, 32] },
      { name: 'cls_score2', dims: [400, 32] },
      { name: 'bbox_pred2', dims: [100, 32] },
    ];
    assert.throws(
      () => resolveFamily(nanodet, meta(320)),
      isUnsupported(
        'cls_score0 [1600, 80]',
        'bbox_pred0 [400, 80]',
        'cls_score1 [100, 80]',
        'bbox_pred1 [1600, 32]',
        'cls_score2 [400, 32]',
        'bbox_pred2 [100, 32]',
        'supported layouts',
        'ultralytics',
        'yolov5',
        'yolox',
      ),
    );
  });

  test('anchor counts that are neither 1× nor 3× the grid are refused', () => {
    assert.throws(
      () => resolveFamily(one('out', [1, 3549, 85]), meta(640)),
      isUnsupported('out [1, 3549, 85]', '640x640'),
    );
    // end-to-end exports ([1, 300, 6], NMS inside) are not one of our layouts
    assert.throws(() => resolveFamily(one('output0', [1, 300, 6]), meta(640)), isUnsupported('[1, 300, 6]'));
  });

  test('a non-detect Ultralytics task is refused unless forced', () => {
    const pose = one('output0', [1, 56, 8400]);
    assert.throws(() => resolveFamily(pose, meta(640, { task: 'pose' })), isUnsupported("task is 'pose'"));
    assert.equal(resolveFamily(pose, meta(640, { task: 'pose' }), 'ultralytics').name, 'ultralytics');
  });

  test('an override wins but impossible shapes are still refused', () => {
    // YOLOX-shaped output forced to YOLOv5: decodable (YOLOv5 boxes need no grid)
    assert.equal(resolveFamily(one('output', [1, 3549, 85]), meta(416), 'yolov5').name, 'yolov5');
    assert.throws(
      () => resolveFamily(one('output0', [1, 84, 8400]), meta(640), 'yolox'),
      isUnsupported("as family 'yolox'", 'output0 [1, 84, 8400]'),
    );
    assert.throws(
      () => resolveFamily(one('output0', [1, 8400, 84]), meta(640), 'ultralytics'),
      isUnsupported("as family 'ultralytics'"),
    );
    assert.throws(() => resolveFamily(one('output0', [1, 25200, 85]), meta(640), 'yolox'), isUnsupported('grid cells'));
  });

  test('a symbolic anchor count cannot tell YOLOv5 from YOLOX, so it needs an override', () => {
    const dyn = one('output', [-1, -1, 85]);
    assert.throws(() => resolveFamily(dyn, meta(416)), isUnsupported('[-1, -1, 85]'));
    assert.equal(resolveFamily(dyn, meta(416), 'yolox').name, 'yolox');
    assert.equal(resolveFamily(one('output0', [-1, 84, -1]), meta(640)).name, 'ultralytics');
  });

  test('each call gives a fresh instance (decode buffers are per model)', () => {
    const outs = one('output0', [1, 84, 8400]);
    assert.notEqual(resolveFamily(outs, meta(640)), resolveFamily(outs, meta(640)));
  });
});

describe('resolveNames', () => {
  const props = { names: "{0: 'person', 1: 'bicycle', 2: 'car'}" };

  test('metadata names, when their count matches', () => {
    assert.deepEqual(resolveNames(props, 3), ['person', 'bicycle', 'car']);
  });

  test('a labels file wins over metadata', () => {
    assert.deepEqual(resolveNames(props, 3, 'a\nb\nc\n\n'), ['a', 'b', 'c']);
  });

  test('count mismatches fail clearly', () => {
    assert.throws(
      () => resolveNames(props, 80),
      (e: unknown) =>
        e instanceof SightlineError && e.code === 'UNSUPPORTED_MODEL' && /3 class names .* 80 classes/.test(e.message),
    );
    assert.throws(
      () => resolveNames({}, 2, 'a\nb\nc\n'),
      (e: unknown) =>
        e instanceof SightlineError && e.code === 'INVALID_INPUT' && /3 names .* 2 classes/.test(e.message),
    );
  });

  test('unparseable metadata names fail; no names at all gives class_<i>', () => {
    assert.throws(
      () => resolveNames({ names: 'person,bicycle' }, 2),
      (e: unknown) => e instanceof SightlineError && /labels file/.test(e.message),
    );
    assert.deepEqual(resolveNames({}, 3), ['class_0', 'class_1', 'class_2']);
  });
});
