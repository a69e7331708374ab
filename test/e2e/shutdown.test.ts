/** Graceful shutdown of a real `sightline serve` process: SIGTERM drains, a second signal exits at once. */
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import { HealthClient } from '../../src/generated/health/v1/health.js';
import { serveProcess } from '../support/process.js';
import { sharedDataOrSkip } from '../support/data.js';
import { imagePath, modelPath } from '../support/shared.js';
import { tempDataDir } from '../support/server.js';
import { openStream } from '../support/stream.js';
import { credentials } from '@grpc/grpc-js';

const haveData = sharedDataOrSkip('shutdown');

/** `sightline serve` in its own process, with a registry directory of its own. */
const serve = (args: string[], env: Record<string, string> = {}) =>
  serveProcess(args, { SIGHTLINE_REGISTRY__DATA_DIR: tempDataDir(), ...env });

describe('graceful shutdown', { skip: !haveData }, () => {
  test('SIGTERM during unary calls and open streams: every accepted call completes, exit 0', async () => {
    const bus = readFileSync(imagePath('bus.jpg'));
    // 26 inferences of ~60 ms on 2 workers are ~0.8 s of work: the 5 s grace leaves room for a
    // machine several times slower before accepted calls are cut off (which would be correct then).
    const s = await serve(['--model', modelPath('yolov8n_int8.onnx'), '--workers', '2'], {
      SIGHTLINE_SHUTDOWN_GRACE_MS: '5000',
      SIGHTLINE_POOL__MAX_QUEUE: '16',
    });
    const client = detectorClient(s.address);
    const health = new HealthClient(s.address, credentials.createInsecure());
    const statuses: number[] = [];
    const watch = health.watch({ service: '' });
    watch.on('data', (r: { status: number }) => statuses.push(r.status));
    watch.on('error', () => undefined);
    try {
      await detect(client, { image: bus }); // connected and warm
      const unary = Array.from({ length: 10 }, () => detect(client, { image: bus }));
      // Two streams the client closes itself after SIGTERM, and one it never closes (a camera).
      const streams = [0, 1, 2].map(() => openStream(client, { policy: 'block', maxInFlight: 2 }));
      for (const st of streams) for (let i = 0; i < 4; i++) st.send(i, bus);
      await new Promise((r) => setTimeout(r, 150)); // every call is on the server now
      s.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 100));
      for (const st of streams.slice(0, 2)) {
        st.send(4, bus);
        st.call.end();
      }
      const results = await Promise.allSettled(unary);
      const failed = results.filter((r) => r.status === 'rejected');
      assert.equal(
        failed.length,
        0,
        `accepted unary calls failed: ${failed.map((f) => String((f as PromiseRejectedResult).reason)).join('; ')}`,
      );
      for (const st of streams.slice(0, 2)) {
        assert.equal(await st.done, null, 'a stream the client closed ends OK');
        assert.equal(st.responses.length, 5, 'every frame of a closed stream was answered');
      }
      const camera = await streams[2]!.done;
      assert.equal(
        camera?.code,
        status.UNAVAILABLE,
        'a stream still open at the end of the grace period is told to reconnect',
      );
      assert.equal(streams[2]!.responses.length, 4, 'after answering every frame it had received');
      assert.equal(await s.exit, 0);
      assert.ok(
        statuses.includes(2 /* NOT_SERVING */) || s.logs.some((l) => l.event === 'shutdown_started'),
        'health turned NOT_SERVING',
      );
      assert.ok(s.logs.some((l) => l.event === 'shutdown_complete'));
    } finally {
      client.close();
      health.close();
      s.child.kill('SIGKILL');
    }
  });

  test('a second signal exits at once, with code 1 even while inferences run', async () => {
    const s = await serve(['--model', modelPath('yolov8n_int8.onnx'), '--workers', '2'], {
      SIGHTLINE_POOL__MAX_QUEUE: '16',
    });
    const client = detectorClient(s.address);
    const bus = readFileSync(imagePath('bus.jpg'));
    try {
      await detect(client, { image: bus });
      // A stream that never ends keeps the graceful shutdown waiting for its grace period, and a
      // queue of Detect calls keeps both workers inside ONNX Runtime when the second signal comes
      // (exiting there used to abort the process with SIGABRT instead of exiting 1).
      const st = openStream(client, { policy: 'block', maxInFlight: 1 });
      st.send(1, bus);
      const calls = Array.from({ length: 12 }, () => detect(client, { image: bus }).catch(() => undefined));
      await new Promise((r) => setTimeout(r, 100));
      s.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 50));
      s.child.kill('SIGINT');
      const t0 = Date.now();
      const code = await s.exit;
      assert.equal(code, 1, 'exit code 1, not a signal (-1)');
      // Within the running inferences (a few hundred ms even on a loaded machine), not the 10 s grace
      // period the open stream would hold a graceful shutdown for.
      const ms = Date.now() - t0;
      assert.ok(ms < 5000, `exited ${ms} ms after the second signal`);
      await Promise.all(calls);
    } finally {
      client.close();
      s.child.kill('SIGKILL');
    }
  });
});
