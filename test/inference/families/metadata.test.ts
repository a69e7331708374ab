/**
 * readOnnxMetadata (src/inference/onnx/metadata.ts; tested here with the families that consume it):
 * hand-built ModelProto bytes, the real models' metadata, and refusal of non-protobuf input.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { SightlineError } from '../../../src/errors.js';
import { parseUltralyticsNames } from '../../../src/inference/families/index.js';
import { assertOnnxModel, readOnnxMetadata } from '../../../src/inference/onnx/metadata.js';
import { imagePath, modelPath, requireShared } from '../../support/shared.js';

/** Minimal protobuf writer for the test fixtures. */
function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
const utf8 = (s: string): number[] => [...Buffer.from(s, 'utf8')];
const len = (field: number, body: number[]): number[] => [...varint(field * 8 + 2), ...varint(body.length), ...body];
const int = (field: number, v: number): number[] => [...varint(field * 8), ...varint(v)];
const entry = (k: string, v: string): number[] => len(14, [...len(1, utf8(k)), ...len(2, utf8(v))]);

const notOnnx = (e: unknown): boolean => {
  assert.ok(e instanceof SightlineError);
  assert.equal(e.code, 'UNSUPPORTED_MODEL');
  assert.match(e.message, /not an ONNX model/);
  return true;
};

describe('readOnnxMetadata', () => {
  test('reads metadata_props around other fields, skipping the graph unread', () => {
    const graph = new Array<number>(300_000).fill(0xff); // not a valid GraphProto: proves it is skipped
    const bytes = Uint8Array.from([
      ...int(1, 9),
      ...len(2, utf8('pytorch')),
      ...entry('names', "{0: 'person', 1: 'bi\u00e7ycle'}"),
      ...len(7, graph),
      ...len(8, [...int(2, 17)]),
      ...entry('imgsz', '[640, 640]'),
      ...[...varint(99 * 8 + 5), 1, 2, 3, 4], // unknown fixed32 field
      ...[...varint(98 * 8 + 1), 1, 2, 3, 4, 5, 6, 7, 8], // unknown fixed64 field
      ...entry('imgsz', '[320, 320]'), // a later duplicate wins
      ...entry('__proto__', 'plain'),
    ]);
    const props = readOnnxMetadata(bytes);
    assert.deepEqual(Object.keys(props), ['names', 'imgsz', '__proto__']);
    assert.equal(props.names, "{0: 'person', 1: 'biçycle'}");
    assert.equal(props.imgsz, '[320, 320]');
    assert.equal(props['__proto__'], 'plain');
  });

  test('a model without metadata gives {}', () => {
    assert.deepEqual(readOnnxMetadata(Uint8Array.from([...int(1, 7), ...len(7, [1, 2, 3])])), {});
  });

  test('refuses bytes that are not a protobuf ModelProto', () => {
    assert.throws(() => readOnnxMetadata(new Uint8Array(0)), notOnnx);
    assert.throws(() => readOnnxMetadata(Buffer.from('{"not": "onnx"}')), notOnnx);
    assert.throws(() => readOnnxMetadata(Uint8Array.from([0xff, 0xd8, 0xff, 0xe0, 0, 16])), notOnnx);
    // a length running past the end, and a truncated varint
    assert.throws(
      () => readOnnxMetadata(Uint8Array.from([...varint(7 * 8 + 2), ...varint(1000), 1, 2])),
      /runs past the end/,
    );
    assert.throws(() => readOnnxMetadata(Uint8Array.from([0x80, 0x80])), /truncated varint/);
  });

  test('real models: YOLOv8n names and imgsz, YOLOX without metadata, a JPEG refused', (t) => {
    if (!requireShared(t, 'models')) return;
    const yolo = readFileSync(modelPath('yolov8n_int8.onnx'));
    const started = performance.now();
    const props = readOnnxMetadata(yolo);
    const ms = performance.now() - started;
    assert.equal(props.task, 'detect');
    assert.equal(props.imgsz, '[640, 640]');
    const names = parseUltralyticsNames(props.names);
    assert.ok(names);
    assert.equal(names.length, 80);
    assert.equal(names[0], 'person');
    assert.equal(names[79], 'toothbrush');
    assert.ok(ms < 50, `3.5 MB model took ${ms.toFixed(1)} ms`);

    assert.equal(readOnnxMetadata(readFileSync(modelPath('yolo11n_int8_320.onnx'))).imgsz, '[320, 320]');
    assert.deepEqual(readOnnxMetadata(readFileSync(modelPath('yolox_nano.onnx'))), {});
    assert.throws(() => readOnnxMetadata(readFileSync(imagePath('bus.jpg'))), notOnnx);
  });
});

describe('assertOnnxModel (serve --model, before anything listens)', () => {
  test('a ModelProto needs a graph; anything else is not an ONNX model', (t) => {
    assert.doesNotThrow(() => assertOnnxModel(Uint8Array.from([...int(1, 7), ...len(7, [1, 2, 3])])));
    assert.throws(() => assertOnnxModel(Uint8Array.from([...int(1, 7), ...entry('k', 'v')])), /no graph/);
    assert.throws(() => assertOnnxModel(Buffer.from('{"not": "onnx"}')), notOnnx);
    if (!requireShared(t, 'models')) return;
    for (const m of ['yolov8n_int8.onnx', 'yolo11n_int8_320.onnx', 'yolox_nano.onnx', 'nanodet_m_320.onnx'])
      assert.doesNotThrow(() => assertOnnxModel(readFileSync(modelPath(m))), m);
    assert.throws(() => assertOnnxModel(readFileSync(imagePath('bus.jpg'))), notOnnx);
  });
});
