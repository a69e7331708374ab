/**
 * The pool's background lane (shadow runs): idle capacity only, never ahead of live work, never on the
 * latency session, never on the last idle worker, dropped (busy, expired) rather than queued behind live
 * work. Real worker threads and ONNX Runtime sessions.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { after, before, describe, test } from 'node:test';
import { SightlineError } from '../../../src/errors.js';
import { detectImage, InferencePool, type ModelInfo } from '../../../src/inference/index.js';
import { sharedDataOrSkip } from '../../support/data.js';
import { cocoLabelsFile, imagePath, modelPath } from '../../support/shared.js';
import { waitFor } from '../../support/wait.js';

const haveData = sharedDataOrSkip('background lane');
const never = new AbortController().signal;
const PREP = { limits: { maxBytes: 1 << 24, maxPixels: 40_000_000 }, options: { applyIccProfile: false } };
const REQ = {
  decode: { confThreshold: 0.25, classFilter: null, multiLabel: false },
  nms: { iouThreshold: 0.45, maxDetections: 300, agnostic: false },
};

describe('background lane', { skip: !haveData }, () => {
  let pool: InferencePool;
  let info: ModelInfo;
  let bus: Buffer;
  const live = () => detectImage(pool, 'm', info, bus, PREP, REQ, never);
  const background = (maxWaitMs = 60_000) =>
    detectImage(pool, 'm', info, bus, PREP, REQ, never, undefined, { maxWaitMs });
  const dropped = (reason: string) => (e: SightlineError) => e.code === 'OVERLOADED' && e.fields.dropped === reason;

  /** Samples pool.stats() every millisecond while `work` runs. */
  async function watching<T>(work: Promise<T>): Promise<{ result: T; samples: ReturnType<InferencePool['stats']>[] }> {
    const samples: ReturnType<InferencePool['stats']>[] = [];
    const timer = setInterval(() => samples.push(pool.stats()), 1);
    try {
      return { result: await work, samples };
    } finally {
      clearInterval(timer);
    }
  }

  before(async () => {
    pool = await InferencePool.create({ workers: 2, maxQueue: 32, maxBackground: 3 });
    const model = new Uint8Array(readFileSync(modelPath('yolox_nano.onnx')));
    info = await pool.load('m', model, {
      labelsText: readFileSync(cocoLabelsFile, 'utf8'),
      intraOpThreads: 1,
      latencyThreads: 2,
      executionProviders: ['cpu'],
      warmupRuns: 1,
      cpuMemArena: false,
    });
    bus = readFileSync(imagePath('bus.jpg'));
  });
  after(() => pool?.close());

  test('on an idle pool it runs at once, on a one-thread session, with the live answer', async () => {
    const a = await live();
    const b = await background();
    assert.equal(a.latencySession, true, 'a lone live request gets the latency session');
    assert.equal(b.latencySession, false, 'background work never does');
    assert.deepEqual(
      b.detections.map((d) => [d.classId, d.xMin.toFixed(1)]),
      a.detections.map((d) => [d.classId, d.xMin.toFixed(1)]),
    );
  });

  test('it waits while live work is queued or admitted, and starts only once there is none', async () => {
    // 16 live requests on 2 workers keep the queue non-empty for ~8 inference times; polling every
    // millisecond sees it even on a loaded machine (waiting for a near-full queue of 8 raced the workers).
    const lives = Array.from({ length: 16 }, () => live());
    await waitFor(() => pool.stats().queued >= 4, 10_000, 'live work queued', 1);
    const bg = background();
    const { samples } = await watching(Promise.all([...lives, bg]));
    const ahead = samples.filter((s) => s.backgroundRunning > 0 && (s.queued > 0 || s.admitted > 0));
    assert.deepEqual(ahead, [], 'background work never ran while live work waited');
    assert.ok(
      samples.some((s) => s.backgroundQueued === 1 && s.queued > 0),
      'it did wait behind live work',
    );
  });

  test('it never takes the last idle worker: it starts only once both live runs are over', async () => {
    // Two live runs of different lengths (a 12 MP photo and bus.jpg): under a rule that took any idle
    // worker, the background job would start in the gap between their ends, beside the longer one.
    // A version without a latency session, so neither live run is a wide one (which holds background
    // work back on its own).
    const model = new Uint8Array(readFileSync(modelPath('yolox_nano.onnx')));
    const narrow = await pool.load('narrow', model, {
      labelsText: readFileSync(cocoLabelsFile, 'utf8'),
      intraOpThreads: 1,
      executionProviders: ['cpu'],
      warmupRuns: 1,
      cpuMemArena: false,
    });
    const big = await sharp(bus).resize(4032, 3024, { fit: 'fill' }).jpeg().toBuffer();
    const slow = { ...PREP, options: { ...PREP.options, jpegDctScaling: false } }; // a full 12 MP decode
    const lives = [
      detectImage(pool, 'narrow', narrow, big, slow, REQ, never),
      detectImage(pool, 'narrow', narrow, bus, PREP, REQ, never),
    ];
    await waitFor(() => pool.stats().busyWorkers === 2, 10_000, 'both workers busy', 1);
    const bg = detectImage(pool, 'narrow', narrow, bus, PREP, REQ, never, undefined, { maxWaitMs: 60_000 });
    const { samples } = await watching(Promise.all([...lives, bg]));
    await pool.unload('narrow');
    const beside = samples.filter((s) => s.backgroundRunning > 0 && s.busyWorkers > s.backgroundRunning);
    assert.deepEqual(beside, [], 'the background job never ran beside a live run');
    assert.ok(
      samples.some((s) => s.backgroundRunning === 1),
      'it ran',
    );
  });

  test('at most workers − 1 background jobs run at once', async () => {
    const { samples } = await watching(Promise.all([background(), background(), background()]));
    assert.ok(
      samples.every((s) => s.backgroundRunning <= 1),
      `max running ${Math.max(...samples.map((s) => s.backgroundRunning))}`,
    );
  });

  test('a full lane drops at once (busy); a job that waits too long is dropped (expired)', async () => {
    const busyPool = async (n: number) => {
      const lives = Array.from({ length: n }, () => live());
      await waitFor(() => pool.stats().queued >= n / 2, 10_000, 'live work queued', 1);
      return lives;
    };
    const lives = await busyPool(12);
    const waiting = [background(), background(), background()];
    await waitFor(() => pool.backgroundRefusal() === 'busy', 10_000, 'a full lane');
    await assert.rejects(background(), dropped('busy'));
    await Promise.all([...lives, ...waiting]);
    const more = await busyPool(12);
    await assert.rejects(background(1), dropped('expired'));
    await Promise.all(more);
    assert.equal(pool.stats().backgroundQueued, 0);
  });
});
