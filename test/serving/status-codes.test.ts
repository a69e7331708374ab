/**
 * Detect answers the same status codes in every role, as detector.proto documents them: a server in
 * role all, and an inference replica following a registry, each a real server on loopback.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { sharedDataOrSkip } from '../support/data.js';
import { registryFront } from '../support/registry-front.js';
import { call, registryClient, uploadFile } from '../support/registry.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { openStream } from '../support/stream.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('status codes');
const POOL = { workers: 1, warmupRuns: 0 };
const bus = readFileSync(imagePath('bus.jpg'));

/** The status a Detect call ends with: "OK v<version>" or "<CODE>: <message>". */
async function outcome(srv: TestServer, model: string, version = ''): Promise<string> {
  try {
    return `OK v${(await srv.detect({ image: bus, model, version }, { deadlineMs: 20_000 })).version}`;
  } catch (e) {
    const err = e as ServiceError;
    return `${status[err.code]}: ${err.details}`;
  }
}

describe('Detect status codes in every role', { skip: !haveData }, () => {
  const servers: TestServer[] = [];
  /** Where Detect is called, and where the registry is, per role. */
  const roles: Record<'all' | 'inference', { detect: TestServer; registry: string }> = {} as never;
  let registryServer: TestServer;
  before(async () => {
    const all = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: POOL,
    });
    const registry = await startTestServer({
      role: 'registry',
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: POOL,
    });
    const replica = await startTestServer({ role: 'inference', registry: { address: registry.address }, pool: POOL });
    servers.push(all, registry, replica);
    registryServer = registry;
    roles.all = { detect: all, registry: all.address };
    roles.inference = { detect: replica, registry: registry.address };
    await waitFor(
      () => outcome(replica, 'det').then((o) => o === 'OK v1'),
      30_000,
      'the replica serving det version 1',
    );
    // A second version of det, never promoted, and a model with no active version, in both registries.
    for (const r of Object.values(roles)) {
      const reg = registryClient(r.registry);
      await uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'det' });
      await uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'idle' });
      reg.close();
    }
  });
  after(async () => {
    for (const s of servers.reverse()) await s.close();
  });

  for (const role of ['all', 'inference'] as const) {
    test(`role ${role}: NOT_FOUND for an unknown model or version, FAILED_PRECONDITION for an unloaded version or a model with no active version`, async () => {
      const srv = roles[role].detect;
      // The replica hears of the uploads over WatchModels: wait until it has.
      await waitFor(
        () => outcome(srv, 'idle').then((o) => !o.startsWith('NOT_FOUND')),
        10_000,
        'the uploads announced',
      );
      assert.equal(await outcome(srv, 'det'), 'OK v1');
      assert.equal(await outcome(srv, ''), 'OK v1', 'the default model');
      assert.equal(await outcome(srv, 'det', '1'), 'OK v1', 'a pinned, loaded version');
      assert.equal(await outcome(srv, 'nope'), 'NOT_FOUND: unknown model "nope"');
      assert.equal(await outcome(srv, 'det', '99'), 'NOT_FOUND: model "det" has no version 99');
      assert.equal(await outcome(srv, 'det', 'v2'), 'NOT_FOUND: model "det" has no version "v2": versions are numbers');
      assert.equal(
        await outcome(srv, 'det', '2'),
        'FAILED_PRECONDITION: model "det" version 2 exists but is not loaded; promote it or pin a loaded version',
      );
      assert.equal(
        await outcome(srv, 'idle'),
        'FAILED_PRECONDITION: model "idle" has no active version; promote one with `sightline registry promote idle VERSION`',
      );
      // In a stream, a frame naming no version ends it with that status after the frames before it are answered.
      const s = openStream(srv.client, { maxInFlight: 2 });
      s.send(1, bus);
      s.send(2, bus, { version: 'v2' });
      s.send(3, bus);
      s.call.end();
      const end = await s.done;
      assert.deepEqual(
        s.responses.map((r) => [Number(r.frameId), r.version]),
        [[1, '1']],
      );
      assert.equal(
        `${status[end!.code]}: ${end!.details}`,
        'NOT_FOUND: the default model has no version "v2": versions are numbers',
      );
    });
  }

  test('a replica that has not reached its registry answers UNAVAILABLE (retry), not NOT_FOUND', async () => {
    const lonely = await startTestServer({ role: 'inference', registry: { address: '127.0.0.1:1' }, pool: POOL });
    servers.push(lonely);
    assert.equal(
      await outcome(lonely, 'det'),
      'UNAVAILABLE: model "det" is not loaded: this server has not heard from the registry yet',
    );
    const reg = registryClient(roles.inference.registry);
    const st = await call(reg, reg.getModelStatus, { model: 'det' });
    reg.close();
    assert.deepEqual(
      st.replicas.map((r) => r.servingVersion),
      [1],
      'the fleet view lists the one replica that reports to the registry',
    );
  });

  test('a replica whose active version is not serving here yet answers UNAVAILABLE (retry), naming its state', async () => {
    // Version 2 of det becomes active; the new replica's download of it stalls (a Registry server in
    // front of the same registry, whose FetchBlob never finishes that file), so it stays loading.
    const front = await registryFront(registryServer.app.registry!);
    front.hold(registryServer.app.registry!.getVersion('det', 2).sha256);
    const reg = registryClient(roles.inference.registry);
    await call(reg, reg.promote, { model: 'det', version: 2, reason: 'test' });
    reg.close();
    const late = await startTestServer({
      role: 'inference',
      registry: { address: front.address, fetchIdleTimeoutMs: 60_000 },
      pool: POOL,
    });
    try {
      await waitFor(
        () => outcome(late, 'det').then((o) => !o.includes('has not heard from the registry')),
        10_000,
        'the new replica synced',
      );
      assert.equal(
        await outcome(late, 'det'),
        'UNAVAILABLE: model "det": its active version 2 is not serving here yet (loading)',
      );
      await waitFor(() => front.held.size === 1, 10_000, 'its download reaching the stalled FetchBlob');
      assert.equal(
        await outcome(late, 'det'),
        'UNAVAILABLE: model "det": its active version 2 is not serving here yet (loading)',
        'still loading while the download stalls',
      );
    } finally {
      await late.close();
      await front.stop({ abrupt: true });
    }
  });
});
