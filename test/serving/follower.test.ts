/**
 * The ModelFollower against both RegistryPeers, with the same cases: the in-process peer over a real
 * ModelRegistry (role all), and the gRPC peer over a real registry server on loopback (role
 * inference, with its blob cache). Real models, real worker threads, real SQLite files.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SightlineError } from '../../src/errors.js';
import { InferencePool } from '../../src/inference/index.js';
import { BlobStore, defaultMigrationsDir, RegistryStore } from '../../src/registry/index.js';
import {
  localRegistryPeer,
  ModelFollower,
  ModelManager,
  ModelRegistry,
  type Caller,
  type RegistryPeer,
} from '../../src/serving/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { grpcRegistryPeer } from '../../src/transport/grpc/registry-peer.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir, type TestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('follower');
const LOAD = { intraOpThreads: 1, executionProviders: ['cpu' as const], warmupRuns: 1, cpuMemArena: false };
const ops: Caller = { actor: 'test', peer: '' };
/** Datasets, evaluations and canaries: not exercised here (test/serving/shadow.test.ts and the others are). */
const EVIDENCE = {
  datasets: { maxDatasetBytes: 1 << 30, maxDatasetFiles: 1000, maxFileBytes: 1 << 24 },
  prep: { limits: { maxBytes: 1 << 24, maxPixels: 40_000_000 }, options: { applyIccProfile: false } },
  canary: { minSamples: 100, p99Margin: 0.2, errorRateMargin: 0.01 },
};

/** The gRPC peer's limits, as config's defaults set them (test/serving/follower-recovery.test.ts tests them). */
const PEER_LIMITS = { callTimeoutMs: 10_000, fetchIdleTimeoutMs: 30_000, fetchMinBytesPerSecond: 1 << 20 };

/** The same model with an unknown protobuf field appended: a valid, distinct ONNX file (its own sha256). */
const variant = (file: string, n: number) =>
  Buffer.concat([readFileSync(modelPath(file)), Buffer.from([0xc0, 0x3e, n])]);

async function* once(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}

interface Harness {
  /** The registry the follower follows (in this process either way, so the test can drive it). */
  registry: ModelRegistry;
  dataDir: string;
  peer: RegistryPeer;
  close(): Promise<void>;
}

/** Role all's wiring: a registry in this process, read through localRegistryPeer. */
async function inProcess(): Promise<Harness> {
  const dataDir = tempDataDir();
  const pool = await InferencePool.create({ workers: 1, maxQueue: 4 });
  const store = RegistryStore.open(dataDir, defaultMigrationsDir());
  const registry = new ModelRegistry(
    store,
    new BlobStore(dataDir),
    pool,
    { maxUploadBytes: 64 << 20, load: LOAD, replicaTimeoutMs: 60_000, rolloutTimeoutMs: 60_000, ...EVIDENCE },
    silentLogger,
  );
  await registry.start();
  return {
    registry,
    dataDir,
    peer: localRegistryPeer(registry),
    async close() {
      registry.close();
      store.close();
      await pool.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Role inference's wiring: a registry server on loopback, read through grpcRegistryPeer and a local cache. */
async function overGrpc(): Promise<Harness> {
  const srv: TestServer = await startTestServer({ role: 'registry', pool: { workers: 1, warmupRuns: 0 } });
  const cacheDir = tempDataDir();
  const peer = grpcRegistryPeer({
    address: srv.address,
    cache: new BlobStore(cacheDir),
    maxModelBytes: 64 << 20,
    ...PEER_LIMITS,
  });
  return {
    registry: srv.app.registry!,
    dataDir: srv.dataDir,
    peer,
    async close() {
      peer.close();
      await srv.close();
      rmSync(cacheDir, { recursive: true, force: true });
    },
  };
}

for (const [kind, make] of [
  ['in-process peer (role all)', inProcess],
  ['gRPC peer (role inference)', overGrpc],
] as const) {
  describe(`ModelFollower with the ${kind}`, { skip: !haveData }, () => {
    let h: Harness;
    let pool: InferencePool;
    let models: ModelManager;
    let follower: ModelFollower;
    const served = () => {
      const v = models.activeVersion('det');
      return v?.state === 'serving' ? v.version : null;
    };
    const states = () =>
      models
        .loaded('det')
        .map((v) => `${v.version} ${v.state}`)
        .sort();
    const upload = async (bytes: Uint8Array, model = 'det') =>
      (await h.registry.upload({ model, notes: '', labels: [], sourceName: null }, once(bytes), ops)).version.version;

    before(async () => {
      h = await make();
      // Version 1 is active before the follower starts: it arrives in the snapshot.
      await h.registry.promote('det', await upload(readFileSync(modelPath('yolo11n_int8_320.onnx'))), ops, 'first');
      pool = await InferencePool.create({ workers: 1, maxQueue: 4 });
      models = new ModelManager(pool, silentLogger);
      follower = new ModelFollower(
        h.peer,
        models,
        {
          replica: 'replica-a',
          keepRollbackWarm: true,
          load: LOAD,
          retryMinMs: 50,
          retryMaxMs: 500,
          reportIntervalMs: 200,
        },
        silentLogger,
      );
      follower.start();
    });
    after(async () => {
      follower?.stop();
      await pool?.close();
      await h?.close();
    });

    test('follows the snapshot, then promote, rollback and a promote past the rollback target: load, warm, flip, drain', async () => {
      await waitFor(() => served() === 1, 30_000, 'version 1 serving from the snapshot');
      assert.equal(follower.unserved(), null, 'every promoted model has a version serving');
      const v2 = await upload(readFileSync(modelPath('yolox_nano.onnx')));
      await h.registry.promote('det', v2, ops, 'test');
      await waitFor(
        () => served() === 2 && states().join() === '1 ready,2 serving',
        30_000,
        'version 2 serving, 1 warm as the rollback target',
      );
      await h.registry.rollback('det', ops, 'test');
      await waitFor(() => served() === 1, 5_000, 'the rollback flips at once (both warm)');
      assert.deepEqual(states(), ['1 serving', '2 ready']);
      const v3 = await upload(variant('yolo11n_int8_320.onnx', 3));
      await h.registry.promote('det', v3, ops, 'test');
      // 1 becomes the rollback target; 2 is needed by no pointer and is drained and unloaded.
      await waitFor(() => states().join() === '1 ready,3 serving', 30_000, 'version 3 serving, 1 warm, 2 unloaded');
    });

    test('reports what it serves to the registry: the fleet view has this replica with every version and state', async () => {
      await waitFor(
        () => {
          const [r] = h.registry.status('det').replicas;
          return (
            r?.replica === 'replica-a' &&
            r.servingVersion === 3 &&
            r.activeVersion === 3 &&
            r.versions.map((v) => `${v.version} ${v.state}`).join() === '1 ready,3 serving'
          );
        },
        5_000,
        'the registry seeing replica-a serve version 3',
      );
      const rollout = h.registry.status('det').rollout!;
      assert.deepEqual([rollout.version, rollout.phase, rollout.ready, rollout.total], [3, 'succeeded', 1, 1]);
    });

    test('status codes come from the registry catalog: unknown model or version, unloaded version, no active version', async () => {
      const code = (model: string, version: number) => {
        try {
          models.release(models.acquire(model, version));
          return 'OK';
        } catch (e) {
          return `${(e as SightlineError).code}: ${(e as Error).message}`;
        }
      };
      assert.equal(code('det', 0), 'OK');
      assert.match(code('nope', 0), /^NOT_FOUND: unknown model "nope"/);
      assert.match(code('det', 99), /^NOT_FOUND: model "det" has no version 99/);
      assert.match(code('det', 2), /^PRECONDITION: model "det" version 2 exists but is not loaded/);
      await upload(readFileSync(modelPath('yolo11n_int8_320.onnx')), 'idle');
      await waitFor(() => follower.model('idle'), 5_000, 'the new model announced');
      assert.equal(
        code('idle', 0),
        'PRECONDITION: model "idle" has no active version; promote one with `sightline registry promote idle VERSION`',
      );
      await h.registry.deleteVersion('det', 2, ops, 'test');
      await waitFor(() => !follower.model('det')!.versions.has(2), 5_000, 'the deletion announced');
      assert.match(code('det', 2), /^NOT_FOUND: model "det" has no version 2/);
    });

    test('a version that fails to load is reported failed with its reason while the old one keeps serving, and its rollout fails', async () => {
      const v = await upload(variant('yolo11n_int8_320.onnx', 4));
      // Damage its stored file: the registry's read refuses it (the one integrity check) on either path.
      const blob = join(h.dataDir, 'blobs', 'sha256', h.registry.getVersion('det', v).sha256);
      const good = readFileSync(blob);
      chmodSync(blob, 0o644);
      writeFileSync(blob, Buffer.concat([good.subarray(0, 1000), Buffer.alloc(64), good.subarray(1064)]));
      await h.registry.promote('det', v, ops, 'test');
      await waitFor(
        () => models.loaded('det').find((x) => x.version === v)?.state === 'failed',
        30_000,
        `version ${v} failed`,
      );
      assert.equal(served(), 3, 'the previous version keeps serving');
      assert.match(models.loaded('det').find((x) => x.version === v)!.error!, /is corrupt: its content hashes to/);
      assert.equal(follower.unserved(), null, 'still ready: it serves a version of every promoted model');
      await waitFor(() => h.registry.status('det').rollout?.phase === 'failed', 5_000, 'the rollout failed');
      assert.match(
        h.registry.status('det').rollout!.reason,
        /^replica-a: (registry: fetching [0-9a-f]{12}: )?blob [0-9a-f]{64} is corrupt: its content hashes to/,
      );
      const reported = h.registry.status('det').replicas[0]!.versions.find((x) => x.version === v);
      assert.equal(reported?.state, 'failed');
      assert.equal(
        h.registry.getVersion('det', v).state,
        'corrupt',
        'the registry marked the version corrupt when its read failed',
      );
      await assert.rejects(h.registry.promote('det', v, ops, 'again'), /is corrupt/);
    });
  });
}
