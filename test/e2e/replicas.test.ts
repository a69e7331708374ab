/**
 * One registry and two inference replicas as separate processes on loopback: promote and rollback
 * reach both, a restarted replica catches up, and a registry outage does not interrupt Detect.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import type { DetectorClient } from '../../src/generated/sightline/v1/detector.js';
import { sharedDataOrSkip } from '../support/data.js';
import { waitFor } from '../support/wait.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { call, registryClient, uploadFile } from '../support/registry.js';
import { tempDataDir } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('replicas');

describe('registry and inference replicas', { skip: !haveData }, () => {
  test('promote and rollback reach every replica; restarts and registry outages are survived', async () => {
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
    const [regDir, cacheA, cacheB] = dirs as [string, string, string];
    const bus = readFileSync(imagePath('bus.jpg'));
    const procs: ServedProcess[] = [];
    const clients: DetectorClient[] = [];
    const startRegistry = async (port = 0) => {
      const p = await serveProcess([
        '--role',
        'registry',
        '--data-dir',
        regDir,
        '--port',
        String(port),
        '--model',
        modelPath('yolo11n_int8_320.onnx'),
        '--name',
        'det',
      ]);
      procs.push(p);
      return p;
    };
    const startReplica = async (address: string, cache: string) => {
      const p = await serveProcess(['--role', 'inference', '--registry', address, '--workers', '1'], {
        SIGHTLINE_REGISTRY__CACHE_DIR: cache,
        SIGHTLINE_POOL__WARMUP_RUNS: '1',
        SIGHTLINE_POOL__MAX_QUEUE: '32',
      });
      procs.push(p);
      return p;
    };
    const versionOf = (c: DetectorClient) => detect(c, { image: bus }, { deadlineMs: 5000 }).then((r) => r.version);
    try {
      let registry = await startRegistry();
      const regPort = Number(registry.address.split(':')[1]);
      const reg = registryClient(registry.address);
      let a = await startReplica(registry.address, cacheA);
      const b = await startReplica(registry.address, cacheB);
      let ca = detectorClient(a.address);
      const cb = detectorClient(b.address);
      clients.push(ca, cb);
      for (const c of [ca, cb])
        await waitFor(() => versionOf(c).then((v) => v === '1'), 20_000, 'a replica serving version 1');

      // Promote: every replica swaps within seconds.
      await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
      await call(reg, reg.promote, { model: 'det', version: 2, reason: 'replicas test' });
      const reached = await Promise.all(
        [ca, cb].map((c) => waitFor(() => versionOf(c).then((v) => v === '2'), 20_000, 'version 2 on a replica')),
      );
      await call(reg, reg.rollback, { model: 'det', reason: 'replicas test' });
      const back = await Promise.all(
        [ca, cb].map((c) => waitFor(() => versionOf(c).then((v) => v === '1'), 20_000, 'version 1 after rollback')),
      );
      console.log(
        `# promote reached the replicas in ${reached.map((r) => r.ms).join(', ')} ms; rollback in ${back.map((r) => r.ms).join(', ')} ms`,
      );

      // A replica killed mid-way catches up when it comes back.
      await a.kill('SIGKILL');
      await call(reg, reg.promote, { model: 'det', version: 2, reason: 'while a replica is down' });
      a = await startReplica(registry.address, cacheA);
      ca.close();
      ca = detectorClient(a.address);
      clients.push(ca);
      await waitFor(() => versionOf(ca).then((v) => v === '2'), 20_000, 'the restarted replica on version 2');
      assert.ok(
        a.logs.every((l) => l.event !== 'blob_fetched'),
        'the restarted replica reused its cache',
      );
      reg.close();

      // The registry goes away: Detect on the replicas goes on without a single failure.
      await registry.kill('SIGKILL');
      let failures = 0;
      let served = 0;
      // At least 1.5 s and 3 rounds (a loaded machine serves fewer calls in the time), at most 30 s.
      const t0 = Date.now();
      const until = t0 + 1500;
      while ((Date.now() < until || served < 6) && Date.now() - t0 < 30_000) {
        await Promise.all(
          [ca, cb].map((c) =>
            versionOf(c).then(
              (v) => (assert.equal(v, '2'), served++),
              () => failures++,
            ),
          ),
        );
      }
      assert.equal(failures, 0, 'Detect failed while the registry was down');
      assert.ok(served >= 6, `${served} calls served while the registry was down`);

      // It comes back on the same address; the replicas reconnect and follow again.
      registry = await startRegistry(regPort);
      const reg2 = registryClient(registry.address);
      await call(reg2, reg2.rollback, { model: 'det', reason: 'after the outage' });
      for (const c of [ca, cb])
        await waitFor(() => versionOf(c).then((v) => v === '1'), 20_000, 'version 1 after the registry came back');
      reg2.close();
    } finally {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
