/** Stream: order, drop policies, slow/cancelled clients, bad frames. Real gRPC, real models. */
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { sharedDataOrSkip } from '../support/data.js';
import { waitFor } from '../support/wait.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { openStream } from '../support/stream.js';

const haveData = sharedDataOrSkip('stream');

describe('Detect stream', { skip: !haveData }, () => {
  let srv: TestServer;
  let bus: Buffer;
  let zidane: Buffer;
  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    zidane = readFileSync(imagePath('zidane.jpg'));
    srv = await startTestServer({
      models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 2, warmupRuns: 1 },
    });
  });
  after(() => srv?.close());

  test('responses come back in frame order with the right results (block, 4 in flight)', async () => {
    const s = openStream(srv.client, { policy: 'block', maxInFlight: 4 });
    for (let i = 1; i <= 16; i++) s.send(i, i % 2 ? bus : zidane);
    s.call.end();
    assert.equal(await s.done, null);
    assert.deepEqual(
      s.responses.map((r) => Number(r.frameId)),
      Array.from({ length: 16 }, (_, i) => i + 1),
    );
    for (const r of s.responses) {
      assert.equal(r.dropped, false);
      const hasBus = r.detections.some((d) => d.label === 'bus');
      assert.equal(hasBus, Number(r.frameId) % 2 === 1, `frame ${r.frameId} answered with the other image's result`);
    }
  });

  test('block loses nothing when the client sends faster than the server infers', async () => {
    const s = openStream(srv.client, { policy: 'block', maxInFlight: 1 });
    for (let i = 0; i < 24; i++) s.send(i, bus);
    s.call.end();
    assert.equal(await s.done, null);
    assert.equal(s.responses.length, 24);
    assert.ok(s.responses.every((r) => !r.dropped && r.detections.length > 0));
  });

  test('latest drops the oldest waiting frames, reports each in order, and always answers the newest', async () => {
    const before = srv.app.pool.stats().runsStarted;
    const s = openStream(srv.client, { policy: 'latest', maxInFlight: 1 });
    for (let i = 0; i < 30; i++) s.send(i, bus);
    s.call.end();
    assert.equal(await s.done, null);
    assert.deepEqual(
      s.responses.map((r) => Number(r.frameId)),
      Array.from({ length: 30 }, (_, i) => i),
    );
    const dropped = s.responses.filter((r) => r.dropped);
    const delivered = s.responses.filter((r) => !r.dropped);
    assert.ok(dropped.length > 0, 'some frames were dropped under overload');
    assert.ok(dropped.every((r) => r.detections.length === 0 && !r.timing));
    assert.equal(s.responses.at(-1)!.dropped, false, 'the newest frame is answered');
    assert.equal(srv.app.pool.stats().runsStarted - before, delivered.length, 'dropped frames never ran inference');
  });

  test('the policy can be chosen in metadata; a bad policy is INVALID_ARGUMENT', async () => {
    const s = openStream(srv.client, {
      metadata: { 'x-sightline-drop-policy': 'latest', 'x-sightline-max-in-flight': '1' },
    });
    for (let i = 0; i < 20; i++) s.send(i, bus);
    s.call.end();
    assert.equal(await s.done, null);
    assert.ok(s.responses.some((r) => r.dropped));
    const bad = openStream(srv.client, { metadata: { 'x-sightline-drop-policy': 'sometimes' } });
    bad.send(1, bus);
    const err = await bad.done;
    assert.equal(err?.code, status.INVALID_ARGUMENT);
    assert.match(err!.details, /drop-policy/);
  });

  test('a client that cancels mid-stream frees its slots at once; the next stream gets full capacity', async () => {
    const a = openStream(srv.client, { policy: 'block', maxInFlight: 8 });
    for (let i = 0; i < 40; i++) a.send(i, bus);
    await waitFor(() => a.responses.length >= 1, 10_000, 'a first response');
    a.call.cancel();
    await a.done;
    await waitFor(
      () => {
        const st = srv.app.pool.stats();
        return st.admitted === 0 && st.queued === 0 && st.busyWorkers === 0;
      },
      2_000,
      'the pool to be idle after the cancel',
    );
    const ran = srv.app.pool.stats().runsStarted;
    const b = openStream(srv.client, { policy: 'block', maxInFlight: 2 });
    for (let i = 0; i < 6; i++) b.send(i, zidane);
    b.call.end();
    assert.equal(await b.done, null);
    assert.equal(b.responses.length, 6);
    assert.equal(srv.app.pool.stats().runsStarted - ran, 6, 'only stream B ran after the cancel');
  });

  test('a bad frame ends the stream with INVALID_ARGUMENT naming its frame_id, after the earlier frames', async () => {
    const s = openStream(srv.client, { policy: 'block', maxInFlight: 2 });
    s.send(1, bus);
    s.send(2, bus);
    s.send(3, Buffer.from('not an image'));
    s.send(4, bus);
    s.call.end();
    const err = await s.done;
    assert.equal(err?.code, status.INVALID_ARGUMENT);
    assert.match(err!.details, /frame_id 3/);
    assert.deepEqual(
      s.responses.map((r) => Number(r.frameId)),
      [1, 2],
    );
  });

  test('unary Detect callers are served while streams run', async () => {
    const streams = [0, 1].map(() => openStream(srv.client, { policy: 'block', maxInFlight: 2 }));
    for (const s of streams) for (let i = 0; i < 12; i++) s.send(i, bus);
    const unary = await Promise.all(Array.from({ length: 4 }, () => srv.detect({ image: zidane })));
    assert.equal(unary.length, 4);
    for (const s of streams) s.call.end();
    for (const s of streams) assert.equal(await s.done, null);
  });
});
