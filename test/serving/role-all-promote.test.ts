/**
 * Role all keeps its synchronous Promote through the promote check main.ts wires: the version is
 * loaded before the pointer moves, so one that cannot be served is refused and the pointer stays, and
 * one that can is served when Promote returns (the one process is a fleet of one).
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { RolloutPhase } from '../../src/generated/sightline/v1/registry.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient, uploadBytes, uploadFile } from '../support/registry.js';
import { startTestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('role all promote');

test(
  'role all: a version that fails to load is refused and the pointer stays; one that loads serves when Promote returns',
  { skip: !haveData },
  async () => {
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 1, warmupRuns: 0 },
      fleet: { replicaName: 'solo' },
    });
    const reg = registryClient(srv.address);
    const bus = readFileSync(imagePath('bus.jpg'));
    try {
      // A valid upload whose stored file is damaged afterwards (an unknown protobuf field keeps the bytes distinct).
      const v2 = await uploadBytes(
        reg,
        Buffer.concat([readFileSync(modelPath('yolox_nano.onnx')), Buffer.from([0xc0, 0x3e, 2])]),
        { model: 'det' },
      );
      const blob = join(srv.dataDir, 'blobs', 'sha256', v2.sha256);
      chmodSync(blob, 0o644);
      writeFileSync(blob, Buffer.alloc(1000));
      await assert.rejects(
        call(reg, reg.promote, { model: 'det', version: 2, reason: 'damaged' }),
        (e: ServiceError) => {
          assert.equal(e.code, status.FAILED_PRECONDITION);
          assert.match(e.details, /^model det version 2 failed to load: blob [0-9a-f]{64} is corrupt/);
          return true;
        },
      );
      const st = await call(reg, reg.getModelStatus, { model: 'det' });
      assert.deepEqual([st.activeVersion, st.rollbackVersion], [1, 0], 'the pointer stayed');
      assert.deepEqual(
        st.replicas.map((r) => [r.replica, r.servingVersion, r.versions.map((v) => v.version)]),
        [['solo', 1, [1]]],
        'the refused version is not kept',
      );
      assert.equal((await srv.detect({ image: bus })).version, '1');

      // A version that loads: served by the time Promote answers, its rollout already succeeded.
      await uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'det' });
      const ok = await call(reg, reg.promote, { model: 'det', version: 3, reason: 'good' });
      assert.deepEqual(
        [ok.activeVersion, ok.rollbackVersion, ok.rollout?.version, ok.rollout?.phase],
        [3, 1, 3, RolloutPhase.ROLLOUT_PHASE_SUCCEEDED],
      );
      assert.equal((await srv.detect({ image: bus })).version, '3');

      const audit = await runCli(['audit', '--data-dir', srv.dataDir, '--json']);
      const entries = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; target: string; outcome: string; reason: string });
      const refused = entries.find((e) => e.action === 'promote' && e.target === 'det@2');
      assert.equal(refused?.outcome, 'error');
      assert.match(refused!.reason, /failed to load/);
      assert.ok(entries.some((e) => e.action === 'rollout' && e.target === 'det@3' && e.outcome === 'ok'));
    } finally {
      reg.close();
      await srv.close();
    }
  },
);
