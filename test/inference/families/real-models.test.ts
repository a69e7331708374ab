/**
 * One real inference per architecture: bus.jpg is letterboxed with sharp and turned into a tensor by
 * hand here (independently of src/inference/preprocess), run through onnxruntime-node, then decoded
 * by the resolved family, NMS'd and mapped back; the result must match expected/detections.json.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { labelFor, parseUltralyticsNames, resolveFamily, resolveNames } from '../../../src/inference/families/index.js';
import { nms } from '../../../src/inference/nms/nms.js';
import { readOnnxMetadata } from '../../../src/inference/onnx/metadata.js';
import type { Detection, ModelMeta, TensorInfo } from '../../../src/inference/types.js';
import { assertMatchesReference, expectedFor } from '../../support/compare.js';
import { cocoLabelsFile, imagePath, modelPath, requireShared } from '../../support/shared.js';

interface Prepared {
  tensor: Float32Array;
  padLeft: number;
  padTop: number;
  /** source pixels per resized pixel, per axis */
  sx: number;
  sy: number;
  srcW: number;
  srcH: number;
}

/** Letterbox as DATA.md describes: linear resize, pad 114; centred/RGB/255 or top-left/BGR/raw. */
async function prepare(file: string, size: number, centred: boolean): Promise<Prepared> {
  const { width: srcW = 0, height: srcH = 0 } = await sharp(file).metadata();
  const r = Math.min(size / srcW, size / srcH);
  const rw = centred ? Math.round(srcW * r) : Math.floor(srcW * r);
  const rh = centred ? Math.round(srcH * r) : Math.floor(srcH * r);
  const padLeft = centred ? Math.round((size - rw) / 2 - 0.1) : 0;
  const padTop = centred ? Math.round((size - rh) / 2 - 0.1) : 0;
  const { data, info } = await sharp(file)
    .removeAlpha()
    .resize(rw, rh, { fit: 'fill', kernel: 'linear' })
    .extend({
      left: padLeft,
      top: padTop,
      right: size - rw - padLeft,
      bottom: size - rh - padTop,
      background: { r: 114, g: 114, b: 114 },
    })
    .raw()
    .toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  assert.equal(info.width, size);
  assert.equal(info.height, size);
  const plane = size * size;
  const tensor = new Float32Array(3 * plane);
  for (let p = 0; p < plane; p++) {
    const R = data[p * 3];
    const G = data[p * 3 + 1];
    const B = data[p * 3 + 2];
    if (centred) {
      tensor[p] = R / 255;
      tensor[plane + p] = G / 255;
      tensor[2 * plane + p] = B / 255;
    } else {
      tensor[p] = B;
      tensor[plane + p] = G;
      tensor[2 * plane + p] = R;
    }
  }
  return { tensor, padLeft, padTop, sx: srcW / rw, sy: srcH / rh, srcW, srcH };
}

const dimsOf = (shape: ReadonlyArray<number | string>): number[] => shape.map((d) => (typeof d === 'number' ? d : -1));

async function detect(model: string, labelsText?: string): Promise<Detection[]> {
  const bytes = readFileSync(modelPath(model));
  const props = readOnnxMetadata(bytes);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'] });
  try {
    const input = session.inputMetadata[0];
    assert.ok(input.isTensor);
    const [, , h, w] = dimsOf(input.shape);
    const meta: ModelMeta = { props, inputWidth: w, inputHeight: h };
    const outputs: TensorInfo[] = session.outputMetadata.map((o) => ({
      name: o.name,
      dims: o.isTensor ? dimsOf(o.shape) : [],
    }));
    const family = resolveFamily(outputs, meta);
    const names = resolveNames(props, family.numClasses(outputs), labelsText);

    const prep = await prepare(imagePath('bus.jpg'), w, family.letterbox.placement === 'center');
    const result = await session.run({ [input.name]: new ort.Tensor('float32', prep.tensor, [1, 3, h, w]) });
    const data = session.outputNames.map((n) => result[n].data as Float32Array);

    const cand = family.decode(data, outputs, meta, { confThreshold: 0.25, classFilter: null, multiLabel: false });
    const keep = nms(cand, { iouThreshold: 0.45, maxDetections: 300, agnostic: false });
    const clip = (v: number, hi: number): number => Math.min(hi, Math.max(0, v));
    return Array.from(keep, (i): Detection => {
      const b = cand.boxes;
      return {
        classId: cand.classes[i],
        label: labelFor(names, cand.classes[i]),
        confidence: cand.scores[i],
        xMin: clip((b[i * 4] - prep.padLeft) * prep.sx, prep.srcW),
        yMin: clip((b[i * 4 + 1] - prep.padTop) * prep.sy, prep.srcH),
        xMax: clip((b[i * 4 + 2] - prep.padLeft) * prep.sx, prep.srcW),
        yMax: clip((b[i * 4 + 3] - prep.padTop) * prep.sy, prep.srcH),
      };
    });
  } finally {
    await session.release();
  }
}

describe('real models on bus.jpg', () => {
  test('yolov8n_int8 (ultralytics, 640, names from metadata) matches the reference', async (t) => {
    if (!requireShared(t, 'models', 'yolov8n_int8.onnx')) return;
    const names = parseUltralyticsNames(readOnnxMetadata(readFileSync(modelPath('yolov8n_int8.onnx'))).names);
    assert.equal(names?.[0], 'person');
    const dets = await detect('yolov8n_int8.onnx');
    assertMatchesReference(dets, expectedFor('yolov8n_int8.onnx', 'bus.jpg'), 'yolov8n bus.jpg');
  });

  test('yolox_nano (yolox, 416, BGR raw, top-left; names from classes.txt) matches the reference', async (t) => {
    if (!requireShared(t, 'models', 'yolox_nano.onnx')) return;
    const dets = await detect('yolox_nano.onnx', readFileSync(cocoLabelsFile, 'utf8'));
    assertMatchesReference(dets, expectedFor('yolox_nano.onnx', 'bus.jpg'), 'yolox_nano bus.jpg');
  });
});
