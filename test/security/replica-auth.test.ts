/** Auth across roles of the binary: replicas check tokens issued by the registry, and revocations reach them. */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { detect, detectorClient, monitoringClient } from '../../src/cli/client.js';
import { buildProfile } from '../../src/cli/commands/drift.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { waitFor } from '../support/wait.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { tempDataDir } from '../support/server.js';
import { coco128Dir, imagePath, modelPath } from '../support/shared.js';

const IMAGES = join(coco128Dir, 'images', 'train2017');

const haveData = sharedDataOrSkip('replica-auth');

describe('auth with a registry and an inference replica', { skip: !haveData }, () => {
  test('a token created on the registry works on the replica; revoking it reaches the replica', async () => {
    const regDir = tempDataDir();
    const cacheDir = tempDataDir();
    const lazyCacheDir = tempDataDir();
    const secrets = tempDataDir();
    const bootstrap = join(secrets, 'admin-token');
    const replica = join(secrets, 'replica-token');
    writeFileSync(bootstrap, 'sl_0123456789abcdef_bootstrapbootstrapbootstrapbootstrapboo');
    writeFileSync(replica, 'sl_fedcba9876543210_replicareplicareplicareplicareplicarepli');
    const procs: ServedProcess[] = [];
    const bus = readFileSync(imagePath('bus.jpg'));
    try {
      const reg = await serveProcess(
        ['--role', 'registry', '--data-dir', regDir, '--model', modelPath('yolo11n_int8_320.onnx'), '--name', 'det'],
        {
          SIGHTLINE_AUTH__ENABLED: 'true',
          SIGHTLINE_AUTH__BOOTSTRAP_TOKEN_FILE: bootstrap,
          SIGHTLINE_AUTH__REPLICA_TOKEN_FILE: replica,
        },
      );
      procs.push(reg);
      const rep = await serveProcess(['--role', 'inference', '--registry', reg.address, '--workers', '1'], {
        SIGHTLINE_AUTH__ENABLED: 'true',
        SIGHTLINE_AUTH__TOKEN_SYNC_INTERVAL_MS: '1000',
        SIGHTLINE_REGISTRY__TOKEN_FILE: replica,
        SIGHTLINE_REGISTRY__CACHE_DIR: cacheDir,
      });
      procs.push(rep);
      // A second replica whose periodic sync never comes during the test: new tokens reach it only by
      // the on-demand sync a token it does not know triggers.
      const lazy = await serveProcess(['--role', 'inference', '--registry', reg.address, '--workers', '1'], {
        SIGHTLINE_AUTH__ENABLED: 'true',
        SIGHTLINE_AUTH__TOKEN_SYNC_INTERVAL_MS: '600000',
        SIGHTLINE_REGISTRY__TOKEN_FILE: replica,
        SIGHTLINE_REGISTRY__CACHE_DIR: lazyCacheDir,
      });
      procs.push(lazy);
      const made = await runCli([
        'token',
        'create',
        '--name',
        'camera-app',
        '--role',
        'inferencer',
        '--json',
        '--data-dir',
        regDir,
      ]);
      assert.equal(made.code, 0, made.stderr);
      const token = (JSON.parse(made.stdout) as { token: string }).token;
      const viewer = (
        JSON.parse(
          (await runCli(['token', 'create', '--name', 'dash', '--role', 'viewer', '--json', '--data-dir', regDir]))
            .stdout,
        ) as { token: string }
      ).token;

      // Tokens created after the replica's last sync are unknown to it, and every refusal counts toward
      // auth.maxFailuresPerMinute for this address (20): waits on a sync poll every 400 ms, so that
      // even a sync delayed by a loaded machine costs a few failures, not a minute's lockout.
      const SYNC_POLL_MS = 400;
      const refusedWith = (code: status) => (e: ServiceError) => (e.code === code ? true : Promise.reject(e));
      const withToken = detectorClient(rep.address, { token });
      await waitFor(
        async () => (await detect(withToken, { image: bus })).version === '1',
        20_000,
        'the replica to serve with the new token',
        SYNC_POLL_MS,
      );
      const onLazy = detectorClient(lazy.address, { token });
      let refusals = 0;
      const { ms: lazyMs } = await waitFor(
        () =>
          detect(onLazy, { image: bus }).then(
            (r) => r.version === '1',
            (e: ServiceError) => (e.code === status.UNAUTHENTICATED && refusals++, Promise.reject(e)),
          ),
        20_000,
        'a replica with a 10-minute sync interval to accept a token created after its start',
        200,
      );
      assert.ok(refusals <= 3, `${refusals} refusals before the on-demand sync took effect`);
      console.log(`# on-demand token sync: accepted after ${refusals} refusal(s), ${lazyMs} ms`);
      onLazy.close();
      const anonymous = detectorClient(rep.address);
      await assert.rejects(detect(anonymous, { image: bus }), (e: ServiceError) => e.code === status.UNAUTHENTICATED);
      const dash = detectorClient(rep.address, { token: viewer });
      // Known to the replica after its next sync: then refused for its role, not for being unknown.
      await waitFor(
        () =>
          detect(dash, { image: bus }).then(
            () => Promise.reject(new Error('Detect succeeded')),
            refusedWith(status.PERMISSION_DENIED),
          ),
        10_000,
        'a viewer token to be refused Detect for its role',
        SYNC_POLL_MS,
      );

      // BuildProfile on the replica stores the profile in the registry with the caller's token (the
      // replica's own token may not publish): the registry's audit log names the caller.
      const publisher = (
        JSON.parse(
          (
            await runCli([
              'token',
              'create',
              '--name',
              'calibrator',
              '--role',
              'publisher',
              '--json',
              '--data-dir',
              regDir,
            ])
          ).stdout,
        ) as { token: string }
      ).token;
      const mon = monitoringClient(rep.address, { token: publisher });
      const names = readdirSync(IMAGES)
        .filter((n) => n.endsWith('.jpg'))
        .sort()
        .slice(0, 4);
      await waitFor(
        () => buildProfile(mon, { model: 'det', version: 0 }, IMAGES, names).then(() => true),
        10_000,
        'a profile built through the replica with a publisher token',
        SYNC_POLL_MS,
      );
      mon.close();
      const audit = await runCli(['audit', '--json', '--data-dir', regDir]);
      const profiles = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; target: string; principal: string; outcome: string })
        .filter((e) => e.action === 'profile');
      assert.deepEqual(
        profiles.map((e) => [e.target, e.principal, e.outcome]),
        [['det@1', 'calibrator', 'ok']],
      );

      assert.equal((await runCli(['token', 'revoke', 'camera-app', '--data-dir', regDir])).code, 0);
      const t0 = Date.now();
      await waitFor(
        () =>
          detect(withToken, { image: bus }).then(
            () => Promise.reject(new Error('Detect still succeeds')),
            refusedWith(status.UNAUTHENTICATED),
          ),
        10_000,
        'the revocation to reach the replica',
      );
      console.log(`# revocation reached the replica in ${Date.now() - t0} ms (sync interval 1000 ms)`);
      for (const c of [withToken, anonymous, dash]) c.close();
    } finally {
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      for (const d of [regDir, cacheDir, lazyCacheDir, secrets]) rmSync(d, { recursive: true, force: true });
    }
  });
});
