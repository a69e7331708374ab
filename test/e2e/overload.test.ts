/** Admission control and deadlines: refuse early, never run work nobody waits for. */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { detect } from '../../src/cli/client.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('overload');

describe('Admission control and deadlines', { skip: !haveData }, () => {
  let srv: TestServer;
  let bus: Buffer;
  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer({
      models: [{ name: 'yolov8n', path: modelPath('yolov8n_int8.onnx') }],
      pool: { workers: 1, maxQueue: 2, warmupRuns: 1 },
    });
  });
  after(() => srv?.close());

  test('a burst beyond capacity: the excess gets RESOURCE_EXHAUSTED with a retry hint, the rest correct answers', async () => {
    const rss0 = process.memoryUsage().rss;
    let trailer: string | undefined;
    let pushback: string | undefined;
    const results = await Promise.all(
      Array.from(
        { length: 20 },
        () =>
          new Promise<'ok' | 'exhausted'>((resolve, reject) => {
            const call = srv.client.detect(
              {
                model: '',
                version: '',
                image: bus,
                confidenceThreshold: 0,
                iouThreshold: 0,
                maxDetections: 0,
                classes: [],
                agnosticNms: false,
                frameId: 0n,
              },
              (err: ServiceError | null, res) => {
                if (!err) return resolve(res!.detections.some((d) => d.label === 'bus') ? 'ok' : 'exhausted');
                if (err.code !== status.RESOURCE_EXHAUSTED) return reject(err);
                assert.match(err.details, /capacity/);
                resolve('exhausted');
              },
            );
            call.on('status', (s) => {
              trailer ??= s.metadata.get('retry-after-ms')[0]?.toString();
              pushback ??= s.metadata.get('grpc-retry-pushback-ms')[0]?.toString();
            });
          }),
      ),
    );
    const ok = results.filter((r) => r === 'ok').length;
    assert.ok(ok >= 3, `at least workers + queue (3) were answered, got ${ok}`);
    assert.ok(ok < 20, 'some were refused');
    assert.ok(trailer !== undefined && Number(trailer) > 0, `retry-after-ms trailer: ${trailer}`);
    assert.equal(pushback, trailer, 'the same hint as gRPC retry pushback (gRFC A6)');
    const st = srv.app.pool.stats();
    assert.equal(st.admitted, 0);
    assert.equal(st.queued, 0);
    assert.ok(process.memoryUsage().rss - rss0 < 150 * 1024 * 1024, 'memory stays bounded');
    await srv.detect({ image: bus }); // and it still serves
  });

  test('a 1 ms deadline gets DEADLINE_EXCEEDED without running inference', async () => {
    const ran = srv.app.pool.stats().runsStarted;
    await assert.rejects(
      srv.detect({ image: bus }, { deadlineMs: 1 }),
      (e: ServiceError) => e.code === status.DEADLINE_EXCEEDED,
    );
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(srv.app.pool.stats().runsStarted, ran);
  });

  test('a request whose deadline passes while it waits in the queue never reaches ONNX Runtime', async () => {
    const ran = srv.app.pool.stats().runsStarted;
    // Occupy the only worker and the queue, then send one with a deadline shorter than the wait.
    const busy = [srv.detect({ image: bus }), srv.detect({ image: bus })];
    await new Promise((r) => setTimeout(r, 30));
    const short = detect(srv.client, { image: bus }, { deadlineMs: 60 });
    await assert.rejects(short, (e: ServiceError) => e.code === status.DEADLINE_EXCEEDED);
    await Promise.all(busy);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(srv.app.pool.stats().runsStarted - ran, 2, 'only the two patient requests ran');
  });
});
