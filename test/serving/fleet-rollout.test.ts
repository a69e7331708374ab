/**
 * A rollout end to end, as an operator runs it: a registry and two inference replicas as separate
 * processes, the `sightline` CLI. One promote succeeds with --wait; in the next one replica-b cannot
 * load the version for real (its own registry.maxUploadBytes refuses the file), --wait names it, and
 * --auto-rollback restores the previous version, while Detect traffic on both replicas never fails.
 * replica-b reaches the registry through a TCP relay the test pauses (test/support/tcp-proxy.ts), so
 * it hears of the bad version only once replica-a serves it: the fleet really is mixed, and serving
 * traffic on both versions, when the failure and the automatic rollback happen.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import type { DetectorClient } from '../../src/generated/sightline/v1/detector.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { tcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { tempDataDir } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('fleet rollout');

interface StatusJson {
  activeVersion: number;
  rollbackVersion: number;
  replicas: {
    replica: string;
    servingVersion: number;
    versions: { version: number; state: string; error: string }[];
  }[];
  rollout: { version: number; phase: string } | null;
}

const ROLLOUT_TEST =
  'promote --wait succeeds; a version one replica cannot load fails with its reason and ' +
  '--auto-rollback restores the previous one, with no failed Detect call';

describe('rollouts across a registry and two replica processes', { skip: !haveData }, () => {
  test(ROLLOUT_TEST, async () => {
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
    const [regDir, cacheA, cacheB] = dirs as [string, string, string];
    const procs: ServedProcess[] = [];
    let link: TcpProxy | null = null;
    const clients: DetectorClient[] = [];
    const bus = readFileSync(imagePath('bus.jpg'));
    // replica-b downloads files up to 3.6 MB: yolov8n_int8 (3.50 MB) fits, yolox_nano (3.71 MB) does not.
    const limitB = 3_600_000;
    assert.ok(
      statSync(modelPath('yolov8n_int8.onnx')).size < limitB && statSync(modelPath('yolox_nano.onnx')).size > limitB,
    );
    try {
      const registry = await serveProcess(
        ['--role', 'registry', '--data-dir', regDir, '--model', modelPath('yolo11n_int8_320.onnx'), '--name', 'det'],
        // While replica-b's link is paused it neither reports nor answers pings: keep it in the fleet view and connected.
        { SIGHTLINE_FLEET__REPLICA_TIMEOUT_MS: '120000', SIGHTLINE_GRPC__KEEPALIVE_TIME_MS: '300000' },
      );
      procs.push(registry);
      link = await tcpProxy(registry.address);
      const replica = async (name: string, cache: string, via: string, env: Record<string, string> = {}) => {
        const p = await serveProcess(['--role', 'inference', '--registry', via, '--workers', '1'], {
          SIGHTLINE_REGISTRY__CACHE_DIR: cache,
          SIGHTLINE_FLEET__REPLICA_NAME: name,
          SIGHTLINE_POOL__WARMUP_RUNS: '1',
          SIGHTLINE_POOL__MAX_QUEUE: '16',
          ...env,
        });
        procs.push(p);
        const c = detectorClient(p.address);
        clients.push(c);
        return c;
      };
      const a = await replica('replica-a', cacheA, registry.address);
      const b = await replica('replica-b', cacheB, link.address, {
        SIGHTLINE_REGISTRY__MAX_UPLOAD_BYTES: String(limitB),
      });
      const cli = (...args: string[]) => runCli([...args, '--server', registry.address]);
      // As an operator uploads through `kubectl exec -i POD -- sightline registry upload - … < FILE`.
      const uploadStdin = (file: string) =>
        runCli(['registry', 'upload', '-', '--model', 'det', '--server', registry.address], {
          input: readFileSync(modelPath(file)),
        });
      const status = async () => JSON.parse((await cli('registry', 'status', 'det', '--json')).stdout) as StatusJson;
      const serving = (s: StatusJson) => s.replicas.map((r) => `${r.replica}:${r.servingVersion}`).join(',');
      await waitFor(
        async () => serving(await status()) === 'replica-a:1,replica-b:1',
        60_000,
        'both replicas serving version 1 in the fleet view',
      );

      // 1. A promote every replica can follow: --wait returns once both serve it.
      assert.match((await uploadStdin('yolov8n_int8.onnx')).stdout, /uploaded det version 2/);
      const ok = await cli('registry', 'promote', 'det', '2', '--wait', '120s', '--reason', 'retrained');
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /det version 2: [01]\/2 replica\(s\) ready/, 'progress lines');
      assert.match(ok.stdout, /: succeeded: 2\/2 replica\(s\) serve version 2 after \d+\.\d s\n$/);
      for (const c of [a, b]) assert.equal((await detect(c, { image: bus }, { deadlineMs: 20_000 })).version, '2');

      // 2. Detect traffic on both replicas for the rest of the test: not one call may fail.
      let stop = false;
      const seen = { ok: 0, failed: [] as string[], versions: { a: new Set<string>(), b: new Set<string>() } };
      const traffic = (['a', 'b'] as const).map(async (name) => {
        const c = name === 'a' ? a : b;
        while (!stop) {
          await detect(c, { image: bus }, { deadlineMs: 30_000 }).then(
            (r) => (seen.ok++, seen.versions[name].add(r.version)),
            (e: Error) => seen.failed.push(`${name}: ${e.message}`),
          );
        }
      });

      // 3. A version replica-b refuses: --wait names it and its reason; --auto-rollback brings version 2 back.
      assert.match(
        (await cli('registry', 'upload', modelPath('yolox_nano.onnx'), '--model', 'det')).stdout,
        /uploaded det version 3/,
      );
      // replica-b's link to the registry hangs (nothing lost): it hears of version 3 only once replica-a serves it.
      link.pause();
      const promoting = cli('registry', 'promote', 'det', '3', '--wait', '120s', '--auto-rollback');
      await waitFor(
        async () => serving(await status()) === 'replica-a:3,replica-b:2',
        60_000,
        'a mixed fleet: replica-a serving version 3, replica-b still 2',
      );
      const mixedAt = seen.ok;
      await waitFor(
        () => seen.versions.a.has('3') && seen.ok >= mixedAt + 4,
        30_000,
        'Detect calls answered by both versions at once',
      );
      assert.equal((await status()).rollout?.phase, 'in_progress', 'nothing has failed yet');
      link.resume();
      const bad = await promoting;
      assert.equal(bad.code, 1, `the failed rollout exits 1: ${bad.stdout}`);
      const reason =
        `replica-b: its file is ${statSync(modelPath('yolox_nano.onnx')).size} bytes, ` +
        `over this replica's limit of ${limitB} (registry.maxUploadBytes)`;
      assert.match(
        bad.stderr,
        new RegExp(
          `^sightline: rollout \\d+ \\(promote of det to version 3 by [^)]+\\): failed: ${escape(reason)}; rolled back to version 2\\n`,
        ),
      );
      assert.match(bad.stderr, new RegExp(`\\n  ${escape(reason)}\\n`), 'the failing replica on a line of its own');
      assert.match(
        bad.stdout,
        /\nrollout \d+ \(rollback of det to version 2 by [^)]+\): succeeded: 2\/2 replica\(s\) serve version 2 after \d+\.\d s\n$/,
        'then the rollback, followed to its end',
      );

      const after = await status();
      assert.deepEqual([after.activeVersion, after.rollbackVersion, serving(after)], [2, 3, 'replica-a:2,replica-b:2']);
      assert.deepEqual([after.rollout?.version, after.rollout?.phase], [2, 'succeeded']);
      // A few more calls after the rollback, then the traffic stops.
      const settled = seen.ok;
      await waitFor(() => seen.ok >= settled + 4, 60_000, 'calls after the rollback');
      stop = true;
      await Promise.all(traffic);
      assert.deepEqual(seen.failed, [], 'no Detect call failed during the rollout and the automatic rollback');
      assert.ok(seen.ok >= 6, `${seen.ok} calls served`);
      assert.deepEqual([...seen.versions.b], ['2'], 'replica-b never served version 3');
      assert.deepEqual([...seen.versions.a].sort(), ['2', '3'], 'replica-a served 3, then 2 again');
      const versionsOf = (r: 'a' | 'b') => [...seen.versions[r]].sort().join(', ');
      console.log(
        `# ${seen.ok} Detect calls through the mixed fleet, the failed rollout and its rollback ` +
          `(replica-a: versions ${versionsOf('a')}; replica-b: ${versionsOf('b')}); 0 failed`,
      );

      // 4. The audit log has the rollouts' outcomes, the automatic rollback, and serve --model's registration.
      const audit = await runCli(['audit', '--data-dir', regDir, '--json']);
      assert.equal(audit.code, 0, audit.stderr);
      const entries = audit.stdout
        .trim()
        .split('\n')
        .map(
          (l) =>
            JSON.parse(l) as { principal: string; action: string; target: string; outcome: string; reason: string },
        );
      const line = (e: (typeof entries)[number]) => `${e.principal} ${e.action} ${e.target} ${e.outcome}`;
      const lines = entries.map(line);
      for (const expected of [
        'sightline serve upload det ok',
        'sightline serve promote det@1 ok',
        'sightline serve rollout det@1 ok',
      ])
        assert.ok(lines.includes(expected), `${expected} in ${JSON.stringify(lines)}`);
      const rollouts = entries.filter((e) => e.action === 'rollout' && e.target !== 'det@1');
      assert.deepEqual(
        rollouts.map((e) => [e.target, e.outcome]),
        [
          ['det@2', 'ok'],
          ['det@3', 'error'],
          ['det@2', 'ok'],
        ],
      );
      assert.match(rollouts[1]!.reason, new RegExp(`^failed: ${escape(reason)}; rolling back to version 2$`));
      const rollback = entries.find((e) => e.action === 'rollback')!;
      assert.deepEqual(
        [rollback.outcome, rollback.principal],
        ['ok', rollouts[1]!.principal],
        'the automatic rollback, under the name of whoever started the rollout',
      );

      // 5. A replica that shuts down leaves the fleet view at once, not after fleet.replicaTimeoutMs (15 s).
      void procs[2]!.kill('SIGTERM');
      const gone = await waitFor(
        async () => serving(await status()) === 'replica-a:2',
        10_000,
        'replica-b gone from the fleet view',
      );
      console.log(`# replica-b left the fleet view ${gone.ms} ms after SIGTERM`);
    } finally {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      await link?.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
