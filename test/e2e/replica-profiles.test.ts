/**
 * Drift reference profiles in a scaled-out deployment: a calibration profile built through one
 * inference replica is stored in the registry, the other replicas switch to it at once, and a replica
 * started later reads it before its first request. Real processes, real gRPC, real models.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { call, monitoringClient, registryClient } from '../../src/cli/client.js';
import { buildProfile } from '../../src/cli/commands/drift.js';
import { ProfileSource, type MonitoringClient } from '../../src/generated/sightline/v1/monitoring.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { tempDataDir } from '../support/server.js';
import { coco128Dir, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('replica profiles');
const IMAGES = join(coco128Dir, 'images', 'train2017');
const CALIBRATION = 12;

describe('drift profiles across inference replicas', { skip: !haveData }, () => {
  test('a profile built on one replica is stored in the registry and used by every replica, new ones included', async () => {
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir(), tempDataDir()];
    const [regDir, ...caches] = dirs as [string, string, string, string];
    const procs: ServedProcess[] = [];
    const monitors: MonitoringClient[] = [];
    const replica = async (address: string, cache: string) => {
      const p = await serveProcess(['--role', 'inference', '--registry', address, '--workers', '1'], {
        SIGHTLINE_REGISTRY__CACHE_DIR: cache,
        SIGHTLINE_POOL__WARMUP_RUNS: '1',
      });
      procs.push(p);
      const m = monitoringClient(p.address);
      monitors.push(m);
      return m;
    };
    /** The replica's reference profile as GetDriftReport shows it, once it serves the active version. */
    const profileOn = (m: MonitoringClient) =>
      call(m, m.getDriftReport, { model: 'det', version: 0 }).then(
        (r) => r.profile,
        (e: ServiceError) =>
          e.code === status.UNAVAILABLE || e.code === status.NOT_FOUND ? undefined : Promise.reject(e),
      );
    try {
      const registry = await serveProcess([
        '--role',
        'registry',
        '--data-dir',
        regDir,
        '--model',
        modelPath('yolo11n_int8_320.onnx'),
        '--name',
        'det',
      ]);
      procs.push(registry);
      const reg = registryClient(registry.address);
      const a = await replica(registry.address, caches[0]);
      const b = await replica(registry.address, caches[1]);
      for (const m of [a, b])
        await waitFor(
          () => profileOn(m).then((p) => p?.source === ProfileSource.PROFILE_SOURCE_NONE),
          20_000,
          'a replica monitoring version 1',
        );
      await assert.rejects(
        call(reg, reg.getProfile, { model: 'det', version: 1 }),
        (e: ServiceError) => e.code === status.NOT_FOUND && /no drift reference profile/.test(e.details),
      );

      const names = readdirSync(IMAGES)
        .filter((n) => n.endsWith('.jpg'))
        .sort()
        .slice(0, CALIBRATION);
      const built = await buildProfile(a, { model: 'det', version: 0 }, IMAGES, names);
      assert.equal(built.size, CALIBRATION);

      const stored = await call(reg, reg.getProfile, { model: 'det', version: 1 });
      const body = JSON.parse(stored.profileJson) as { source: string; n: number };
      assert.deepEqual([body.source, body.n], ['calibration', CALIBRATION], 'stored in the registry');
      assert.ok(stored.storedAt.length > 0);

      const seen = await waitFor(
        () =>
          profileOn(b).then((p) => p?.source === ProfileSource.PROFILE_SOURCE_CALIBRATION && p.size === CALIBRATION),
        10_000,
        'the other replica to use the stored profile',
      );
      console.log(`# the other replica used the new profile after ${seen.ms} ms`);

      // Started after the fact: the profile is read from the registry, no traffic profile is collected.
      const c = await replica(registry.address, caches[2]);
      await waitFor(
        () =>
          profileOn(c).then((p) => p?.source === ProfileSource.PROFILE_SOURCE_CALIBRATION && p.size === CALIBRATION),
        20_000,
        'a new replica to read the stored profile',
      );

      // The registry checks what it is sent.
      await assert.rejects(
        call(reg, reg.putProfile, { model: 'det', version: 1, profileJson: '{"version":1}' }),
        (e: ServiceError) => e.code === status.INVALID_ARGUMENT && /invalid reference profile/.test(e.details),
      );
      await assert.rejects(
        call(reg, reg.putProfile, { model: 'det', version: 9, profileJson: stored.profileJson }),
        (e: ServiceError) => e.code === status.NOT_FOUND,
      );
      reg.close();
    } finally {
      for (const m of monitors) m.close();
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
