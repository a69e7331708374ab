/**
 * The ModelFollower of an inference replica when its registry misbehaves: the production gRPC peer
 * and Registry handlers over loopback (test/support/registry-front.ts serves a real ModelRegistry on
 * a port the test can stop and start, and can make FetchBlob stall or trickle), real models, real
 * worker threads. The registry restarts (crash and shutdown) while a promote is made; a download
 * stalls; a download is slower than its deadline and then recovers.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { InferencePool } from '../../src/inference/index.js';
import { BlobStore } from '../../src/registry/index.js';
import { ModelFollower, ModelManager, type Caller, type ModelRegistry } from '../../src/serving/index.js';
import { grpcRegistryPeer } from '../../src/transport/grpc/registry-peer.js';
import { sharedDataOrSkip } from '../support/data.js';
import { registryFront, type RegistryFront } from '../support/registry-front.js';
import { startTestServer, tempDataDir, type TestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('follower recovery');
const LOAD = { intraOpThreads: 1, executionProviders: ['cpu' as const], warmupRuns: 1, cpuMemArena: false };
const ops: Caller = { actor: 'test', peer: '' };
/** Short limits, so each failure shows within a second or two. */
const PEER = { callTimeoutMs: 1_500, fetchIdleTimeoutMs: 400, fetchMinBytesPerSecond: 10 << 20 };

/** The same model with an unknown protobuf field appended: a valid, distinct ONNX file (its own sha256). */
const variant = (n: number) =>
  Buffer.concat([readFileSync(modelPath('yolo11n_int8_320.onnx')), Buffer.from([0xc0, 0x3e, n])]);

async function* once(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}

describe('ModelFollower over gRPC when the registry breaks', { skip: !haveData }, () => {
  let srv: TestServer;
  let registry: ModelRegistry;
  let front: RegistryFront;
  let cacheDir: string;
  let pool: InferencePool;
  let models: ModelManager;
  let follower: ModelFollower;
  let closePeer: () => void;
  const logs: Record<string, unknown>[] = [];
  const events = (name: string) => logs.filter((l) => l.event === name);

  const served = () => {
    const v = models.activeVersion('det');
    return v?.state === 'serving' ? v.version : null;
  };
  const state = (version: number) => models.loaded('det').find((v) => v.version === version);
  /** replica-a as the registry's fleet view shows it. */
  const inFleet = () => registry.status('det').replicas.find((r) => r.replica === 'replica-a');
  const upload = async (bytes: Uint8Array) =>
    (await registry.upload({ model: 'det', notes: '', labels: [], sourceName: null }, once(bytes), ops)).version;

  before(async () => {
    srv = await startTestServer({ role: 'registry', pool: { workers: 1, warmupRuns: 0 } });
    registry = srv.app.registry!;
    await registry.promote('det', (await upload(variant(1))).version, ops, 'first');
    front = await registryFront(registry);
    cacheDir = tempDataDir();
    const log = pino({ level: 'debug' }, { write: (line: string) => void logs.push(JSON.parse(line)) });
    const peer = grpcRegistryPeer({
      address: front.address,
      cache: new BlobStore(cacheDir),
      maxModelBytes: 64 << 20,
      log,
      ...PEER,
    });
    closePeer = () => peer.close();
    pool = await InferencePool.create({ workers: 1, maxQueue: 4 });
    models = new ModelManager(pool, log);
    follower = new ModelFollower(
      peer,
      models,
      {
        replica: 'replica-a',
        keepRollbackWarm: false,
        load: LOAD,
        retryMinMs: 50,
        retryMaxMs: 500,
        reportIntervalMs: 200,
      },
      log,
    );
    follower.start();
    await waitFor(() => served() === 1 && inFleet()?.servingVersion === 1, 30_000, 'replica-a serving version 1');
  });
  after(async () => {
    follower?.stop();
    closePeer?.();
    await front?.stop({ abrupt: true });
    await pool?.close();
    await srv?.close();
    if (cacheDir) rmSync(cacheDir, { recursive: true, force: true });
  });

  test('registry crash during a promote: both streams end with mapped errors; then the replica serves it, back in the fleet view', async () => {
    await front.stop({ abrupt: true });
    const lost = await waitFor(() => events('registry_disconnected')[0], 10_000, 'the follower noticing');
    // The peer's own mapping (fromStatus), not a raw ServiceError.
    assert.match(String(lost.value.err), /^registry: watching models: /);
    const ended = await waitFor(() => events('registry_report_stream_ended')[0], 10_000, 'the report stream ending');
    assert.equal(ended.value.code, 'NOT_READY', 'UNAVAILABLE maps to NOT_READY (the registry went away)');
    assert.equal(ended.value.level, 20, 'logged at debug: the watch already reported the registry lost');
    assert.match(String(ended.value.err), /^registry: the report stream: /);
    await waitFor(() => !inFleet(), 10_000, 'replica-a gone from the fleet view with its stream');

    const v2 = (await upload(variant(2))).version;
    await registry.promote('det', v2, ops, 'made while replica-a cannot hear it');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(served(), 1, 'the replica keeps serving what it has');
    await front.start();
    await waitFor(() => served() === v2, 30_000, `version ${v2} served after the reconnect's snapshot`);
    await waitFor(
      () => inFleet()?.servingVersion === v2,
      5_000,
      'replica-a in the fleet view again, on a new report stream',
    );
    assert.equal(registry.status('det').rollout?.phase, 'succeeded', 'the rollout made while it was away completes');

    // A clean shutdown ends the watch from the registry's side: mapped the same way.
    const before = events('registry_connected').length;
    await front.stop();
    await waitFor(() => events('registry_disconnected').length === 2, 10_000, 'the second disconnect');
    assert.equal(events('registry_disconnected')[1]!.err, 'registry: watching models: the registry ended the watch');
    await front.start();
    await waitFor(() => events('registry_connected').length > before, 10_000, 'reconnected');
    await waitFor(() => inFleet()?.servingVersion === v2, 5_000, 'replica-a back in the fleet view');
  });

  test('a download that stalls fails after fetchIdleTimeoutMs with the reason in the fleet view, and the next promote of the model proceeds', async () => {
    const v3 = await upload(variant(3));
    front.hold(v3.sha256, { sendBytes: 64 * 1024 });
    await registry.promote('det', v3.version, ops, 'its download will stall');
    const why = /^registry: fetching [0-9a-f]{12}: no data for 400 ms \(registry\.fetchIdleTimeoutMs\)$/;
    await waitFor(() => state(v3.version)?.state === 'failed', 15_000, `version ${v3.version} failed`);
    assert.match(state(v3.version)!.error!, why);
    assert.equal(served(), 2, 'version 2 keeps serving');
    await waitFor(
      () =>
        inFleet()?.versions.find((v) => v.version === v3.version && v.state === 'failed' && why.test(v.error ?? '')),
      5_000,
      'the fleet view showing the failed version and why',
    );
    await waitFor(() => registry.status('det').rollout?.phase === 'failed', 5_000, 'the rollout failed');
    assert.match(
      registry.status('det').rollout!.reason,
      /^replica-a: registry: fetching [0-9a-f]{12}: no data for 400 ms/,
    );

    // The file is still held, so every retry of version 3 stalls too. The next promote, made while one
    // of them is stalled, waits at most for that download's idle timeout.
    const v4 = await upload(variant(4));
    const tries = front.held.get(v3.sha256)!;
    await waitFor(() => front.held.get(v3.sha256)! > tries, 5_000, 'a retry of version 3 stalling in its turn');
    const t0 = Date.now();
    await registry.promote('det', v4.version, ops, 'the fix');
    await waitFor(() => served() === v4.version, 30_000, `version ${v4.version} served`);
    await waitFor(() => registry.status('det').rollout?.phase === 'succeeded', 5_000, 'the rollout of v4 succeeded');
    console.log(
      `# version ${v4.version} served ${Date.now() - t0} ms after its promote, made during a stalled download`,
    );
    await waitFor(
      () => state(v3.version) === undefined,
      5_000,
      'the failed version forgotten once no pointer needs it',
    );
  });

  const slowDownload =
    'a download slower than its size-based deadline fails and is tried again every retryMaxMs; ' +
    'once the registry serves it normally, a retry loads it';
  test(slowDownload, async () => {
    const v5 = await upload(variant(5));
    // 256 KiB/s: never idle for 400 ms, but the file needs ~11 s against a deadline of 1.5 s + size / 10 MiB/s.
    front.hold(v5.sha256, { bytesPerSecond: 256 * 1024 });
    await registry.promote('det', v5.version, ops, 'its download will be too slow');
    const failures = () => events('model_load_failed').filter((l) => l.version === v5.version);
    await waitFor(() => failures().length >= 2, 20_000, `two failed loads of version ${v5.version}`);
    const limit = PEER.callTimeoutMs + Math.ceil((v5.sizeBytes / PEER.fetchMinBytesPerSecond) * 1000);
    assert.equal(
      failures()[0]!.err,
      `registry: fetching ${v5.sha256.slice(0, 12)}: ${v5.sizeBytes} bytes not received within ${limit} ms ` +
        '(registry.callTimeoutMs + size / registry.fetchMinBytesPerSecond)',
    );
    // The second try starts retryMaxMs (500 ms) after the first failed, and takes the deadline again.
    const [first, second] = failures().map((l) => Number(l.time));
    assert.ok(second! - first! >= 500 + limit - 100, `${second! - first!} ms between failures`);
    assert.equal(served(), 4, 'version 4 keeps serving');
    front.release(v5.sha256);
    const tries = front.held.get(v5.sha256) ?? 0;
    await waitFor(() => served() === v5.version, 30_000, `version ${v5.version} served by a retry`);
    assert.ok(tries >= 2, `${tries} slow downloads before the release`);
    await waitFor(() => inFleet()?.servingVersion === v5.version, 5_000, 'the fleet view showing it');
  });
});
