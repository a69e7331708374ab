/**
 * pool.latencyThreads: a request that finds every worker idle runs on the first worker's wider session;
 * requests that arrive while others run never do. Real worker threads, real ONNX Runtime sessions.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { detectImage, InferencePool, type ImageResult, type ModelInfo } from '../../../src/inference/index.js';
import { sharedDataOrSkip } from '../../support/data.js';
import { cocoLabelsFile, imagePath, modelPath } from '../../support/shared.js';

const haveData = sharedDataOrSkip('latency session');
const never = new AbortController().signal;
const PREP = { limits: { maxBytes: 1 << 24, maxPixels: 40_000_000 }, options: { applyIccProfile: false } };
const REQ = {
  decode: { confThreshold: 0.25, classFilter: null, multiLabel: false },
  nms: { iouThreshold: 0.45, maxDetections: 300, agnostic: false },
};

describe('latency session', { skip: !haveData }, () => {
  let pool: InferencePool;
  let info: ModelInfo;
  let bus: Buffer;
  const detect = (key = 'm') => detectImage(pool, key, info, bus, PREP, REQ, never);

  before(async () => {
    pool = await InferencePool.create({ workers: 2, maxQueue: 16 });
    const model = new Uint8Array(readFileSync(modelPath('yolox_nano.onnx')));
    const base = {
      labelsText: readFileSync(cocoLabelsFile, 'utf8'),
      intraOpThreads: 1,
      executionProviders: ['cpu' as const],
      warmupRuns: 1,
      cpuMemArena: false,
    };
    info = await pool.load('m', model, { ...base, latencyThreads: 2 });
    await pool.load('narrow', model, { ...base, latencyThreads: 0 });
    bus = readFileSync(imagePath('bus.jpg'));
  });
  after(() => pool?.close());

  test('a lone request runs on it and gets the same detections', async () => {
    const lone = await detect();
    assert.equal(lone.latencySession, true);
    const narrow = await detect('narrow');
    assert.equal(narrow.latencySession, false, 'a model loaded without latencyThreads has no latency session');
    assert.equal(lone.detections.length, narrow.detections.length);
    lone.detections.forEach((d, i) => {
      assert.equal(d.classId, narrow.detections[i]!.classId);
      assert.ok(Math.abs(d.confidence - narrow.detections[i]!.confidence) < 1e-4);
    });
  });

  test('under concurrency only a request that found the pool idle uses it', async () => {
    const all: ImageResult[] = await Promise.all(Array.from({ length: 8 }, () => detect()));
    const wide = all.filter((r) => r.latencySession).length;
    assert.ok(wide <= 1, `${wide} of 8 concurrent requests ran on the latency session`);
    assert.ok(all.every((r) => r.detections.length > 0));
    assert.equal((await detect()).latencySession, true, 'idle again: the next lone request uses it');
  });
});
