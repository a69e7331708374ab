/** The admin HTTP port: /healthz, /readyz before and after a model is ready, other paths, off switch. */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';
import { get, scrape } from './support.js';

const haveData = sharedDataOrSkip('observability admin');

describe('admin HTTP endpoints', { skip: !haveData }, () => {
  let srv: TestServer;
  let port: number;
  before(async () => {
    srv = await startTestServer({ pool: { workers: 1, warmupRuns: 1 } }); // no model yet
    assert.ok(srv.app.admin);
    port = srv.app.admin.port;
    assert.notEqual(port, 9464, 'tests bind a free port');
  });
  after(() => srv?.close());

  test('/healthz is 200 while the process runs, model or not', async () => {
    const r = await get(port, '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok\n');
  });

  test('/readyz is 503 with a reason until a model is ready, then 200', async () => {
    const before = await get(port, '/readyz');
    assert.equal(before.status, 503);
    assert.match(before.body, /^not ready: .*default model/);
    await srv.app.registry!.registerFile('yolo11n', modelPath('yolo11n_int8_320.onnx'), {});
    const after = await get(port, '/readyz');
    assert.equal(after.status, 200, after.body);
    assert.equal(after.body, 'ready\n');
    const { exposition } = await scrape(port);
    assert.ok(
      exposition.samples.some(
        (s) => s.name === 'sightline_model_ready' && s.labels.sightline_model === 'yolo11n' && s.value === 1,
      ),
    );
  });

  test('HEAD works for probes; other methods are 405; other paths 404', async () => {
    assert.equal((await get(port, '/healthz', { method: 'HEAD' })).status, 200);
    const post = await get(port, '/metrics', { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    const nope = await get(port, '/metrics/../secret');
    assert.equal(nope.status, 404);
    assert.equal((await get(port, '/')).status, 404);
    assert.equal((await get(port, '/metrics?name[]=x')).status, 200, 'query strings are ignored');
  });

  test('/readyz turns 503 as soon as shutdown starts', async () => {
    const closing = srv.app.close(2000);
    const r = await get(port, '/readyz').catch(() => ({ status: 503, body: 'closed' }));
    assert.equal(r.status, 503);
    await closing;
  });
});

describe('admin HTTP switched off', { skip: !haveData }, () => {
  test('admin.enabled=false starts no HTTP server', async (t) => {
    const srv = await startTestServer({ admin: { enabled: false }, pool: { workers: 1 } });
    t.after(() => srv.close());
    assert.equal(srv.app.admin, null);
  });

  test('telemetry.metrics=false: /metrics answers an empty exposition, probes still work', async (t) => {
    const srv = await startTestServer({ telemetry: { metrics: false }, pool: { workers: 1 } });
    t.after(() => srv.close());
    assert.ok(srv.app.admin);
    assert.equal(srv.app.metrics.enabled, false);
    const m = await get(srv.app.admin.port, '/metrics');
    assert.equal(m.status, 200);
    assert.equal(m.body, '');
    assert.equal((await get(srv.app.admin.port, '/healthz')).status, 200);
  });

  test('a taken admin port fails start-up, naming the port and the setting that moves it', async (t) => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    t.after(() => blocker.close());
    const taken = (blocker.address() as { port: number }).port;
    await assert.rejects(startTestServer({ admin: { port: taken }, pool: { workers: 1 } }), (e: Error) => {
      assert.match(
        e.message,
        new RegExp(`admin HTTP port 127\\.0\\.0\\.1:${taken} is already in use.*--admin-port, admin\\.port`),
      );
      assert.match(String((e.cause as Error).message), /EADDRINUSE/);
      return true;
    });
  });
});
