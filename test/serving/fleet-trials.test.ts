/**
 * Shadows, canaries, evaluations and gates across a registry and two inference replica processes,
 * through the CLI: the shadow runs on both replicas and the registry sums their tallies, also across a
 * replica killed and restarted under the same name mid-shadow (its new process adds to the evidence);
 * an agreement gate judged on that shadow refuses the candidate; stopping the shadow unloads the
 * candidate everywhere; a slower candidate's canary on both replicas is rolled back by the registry
 * with the reason audited, no Detect call failing; a golden dataset is evaluated on the registry's
 * host, and a promote gated on both (map from the evaluations, agreement from the replicas' shadow) is
 * refused, then forced and rolled out to both replicas, audited as forced with its evidence.
 */
import { Metadata } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import type { DetectorClient } from '../../src/generated/sightline/v1/detector.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { tempDataDir } from '../support/server.js';
import { coco128Dir, cocoLabelsFile, imagePath, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('fleet trials');

interface StatusJson {
  replicas: { replica: string; servingVersion: number; versions: { version: number; state: string }[] }[];
  canary: unknown;
}

interface ShadowJson {
  trial: { id: number };
  replicas: number;
  samples: number;
  failed: number;
  dropped: Record<string, number>;
  agreementMean: number;
}

interface AuditEntry {
  action: string;
  target: string;
  outcome: string;
  reason: string;
}

describe('shadows, canaries and evaluations across a registry and two replicas', { skip: !haveData }, () => {
  const title =
    "the registry sums both replicas' shadow tallies across a replica restart, gates on them, " +
    'rolls back a slow canary, evaluates and gates on that';
  test(title, async () => {
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
    const [regDir, cacheA, cacheB] = dirs as [string, string, string];
    const procs: ServedProcess[] = [];
    const clients: DetectorClient[] = [];
    const images = ['bus.jpg', 'zidane.jpg'].map((f) => readFileSync(imagePath(f)));
    try {
      const registry = await serveProcess(
        [
          '--role',
          'registry',
          '--data-dir',
          regDir,
          '--model',
          modelPath('yolox_nano.onnx'),
          '--labels',
          cocoLabelsFile,
          '--name',
          'det',
        ],
        // Shadow gates judged on this test's few dozen samples.
        { SIGHTLINE_PROMOTION__MIN_SHADOW_SAMPLES: '10' },
      );
      procs.push(registry);
      const replica = (name: string, cache: string) =>
        serveProcess(['--role', 'inference', '--registry', registry.address, '--workers', '1'], {
          SIGHTLINE_REGISTRY__CACHE_DIR: cache,
          SIGHTLINE_FLEET__REPLICA_NAME: name,
          SIGHTLINE_FLEET__REPORT_INTERVAL_MS: '300',
          SIGHTLINE_POOL__WARMUP_RUNS: '1',
          SIGHTLINE_POOL__MAX_QUEUE: '16',
          SIGHTLINE_POOL__LATENCY_THREADS: '0',
          SIGHTLINE_SHADOW__MAX_WAIT_MS: '30000',
          SIGHTLINE_SHADOW__MAX_QUEUE: '32',
        });
      for (const [name, cache] of [
        ['replica-a', cacheA],
        ['replica-b', cacheB],
      ] as const) {
        const p = await replica(name, cache);
        procs.push(p);
        clients.push(detectorClient(p.address));
      }
      const cli = (...args: string[]) => runCli([...args, '--server', registry.address], { timeoutMs: 300_000 });
      const audit = async () =>
        (await runCli(['audit', '--data-dir', regDir, '--json'])).stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as AuditEntry);
      const status = async () => JSON.parse((await cli('registry', 'status', 'det', '--json')).stdout) as StatusJson;
      // Versions warm on each replica ("1+2"); one still loading or draining shows its state.
      const holding = (s: StatusJson) =>
        s.replicas
          .map(
            (r) =>
              `${r.replica}:${r.versions.map((v) => `${v.version}${v.state === 'ready' || v.state === 'serving' ? '' : `(${v.state})`}`).join('+')}`,
          )
          .join(',');
      await waitFor(
        async () => holding(await status()) === 'replica-a:1,replica-b:1',
        60_000,
        'both replicas serving version 1',
      );
      assert.match(
        (await cli('registry', 'upload', modelPath('yolov8n_int8.onnx'), '--model', 'det')).stdout,
        /uploaded det version 2/,
      );

      const failed: string[] = [];
      const versions = new Set<string>();
      let sent = 0;
      // Each call its own x-request-id: a canary's split hashes it (two images alone would be two keys).
      const call = (c: DetectorClient, i: number) => {
        const md = new Metadata();
        md.set('x-request-id', `call-${sent++}`);
        return detect(c, { image: images[i % 2]! }, { deadlineMs: 30_000, metadata: md }).then(
          (r) => versions.add(r.version),
          (e: Error) => failed.push(e.message),
        );
      };

      // 1. A shadow on both replicas, summed by the registry; --wait returns once both hold the candidate warm.
      const shadowStarted = await cli('registry', 'shadow', 'start', 'det', '2', '--sample', '1', '--wait', '2m');
      assert.equal(shadowStarted.code, 0, shadowStarted.stderr);
      assert.match(shadowStarted.stdout, /: warm on 2\/2 replica\(s\)\nshadow \d+ of det version 2 against version 1/);
      assert.equal(holding(await status()), 'replica-a:1+2,replica-b:1+2');
      const n = 12;
      const traffic = () =>
        Promise.all(
          clients.map(async (c) => {
            for (let i = 0; i < n; i++) await call(c, i);
          }),
        );
      /** The shadow's report once `total` sampled requests of two replicas are compared, failed or dropped. */
      const accounted = async (total: number) =>
        (
          await waitFor(
            async () => {
              const r = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as ShadowJson;
              return (
                r.replicas === 2 &&
                r.samples + r.failed + Object.values(r.dropped).reduce((a, b) => a + b, 0) === total &&
                r
              );
            },
            60_000,
            `${total} sampled requests of both replicas accounted for`,
          )
        ).value;
      await traffic();
      const first = await accounted(2 * n);

      // replica-a is killed and started again under its name: its new process counts from zero, and
      // the registry adds that to what the old one sent instead of replacing it.
      await procs[1]!.kill('SIGKILL');
      clients[0]!.close();
      procs[1] = await replica('replica-a', cacheA);
      clients[0] = detectorClient(procs[1].address);
      await waitFor(
        async () => holding(await status()) === 'replica-a:1+2,replica-b:1+2',
        60_000,
        'the restarted replica-a holding both versions again',
      );
      await traffic();
      const shadow = await accounted(4 * n);
      console.log(
        `# shadow over 2 replicas, one restarted: ${first.samples} samples, then ${shadow.samples}; ` +
          `agreement ${shadow.agreementMean.toFixed(3)}, dropped ${JSON.stringify(shadow.dropped)}`,
      );
      assert.ok(first.samples >= n && shadow.samples >= first.samples + n, `${first.samples}, then ${shadow.samples}`);
      assert.ok(shadow.agreementMean < 1, 'yolov8n and yolox_nano do not agree box for box');

      // An agreement gate, judged on the replicas' shadow, refuses the candidate with the measured value.
      const agreement = shadow.agreementMean.toFixed(3).replace('.', '\\.');
      const gateFailed = `agreement ${agreement} >= 0\\.9 \\(shadow ${shadow.trial.id}, ${shadow.samples} samples\\): failed`;
      const refused = await cli('registry', 'promote', 'det', '2', '--require', 'agreement>=0.9');
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        new RegExp(`^sightline: FAILED_PRECONDITION: .* refused by 1 gate\\(s\\): ${gateFailed}; evidence: `),
      );
      assert.equal(holding(await status()), 'replica-a:1+2,replica-b:1+2', 'nothing moved');
      assert.equal((await cli('registry', 'shadow', 'stop', 'det')).code, 0);
      await waitFor(
        async () => holding(await status()) === 'replica-a:1,replica-b:1',
        30_000,
        'the candidate unloaded on both replicas',
      );

      // 2. A canary of the slower version on both replicas, rolled back by the registry.
      const started = await cli(
        'registry',
        'promote',
        'det',
        '2',
        '--canary',
        '50%',
        '--canary-min-samples',
        '10',
        '--canary-p99-margin',
        '0.5',
      );
      assert.equal(started.code, 0, started.stderr);
      await waitFor(
        async () => holding(await status()) === 'replica-a:1+2,replica-b:1+2',
        60_000,
        'both replicas holding the canary',
      );
      let i = 0;
      const deadline = Date.now() + 180_000;
      let running = true;
      while (running && Date.now() < deadline) {
        await Promise.all(clients.map((c) => call(c, i++)));
        if (i % 8 === 0) running = !!(await status()).canary;
      }
      assert.equal(running, false, `the canary was rolled back: ${JSON.stringify((await status()).canary)}`);
      assert.deepEqual(failed, [], 'no Detect call failed');
      assert.deepEqual([...versions].sort(), ['1', '2'], 'both versions answered, each naming itself');
      const rolledBack = (await audit()).find((e) => e.action === 'canary' && e.outcome === 'error');
      assert.match(
        rolledBack?.reason ?? '',
        /^rolled_back: rolled back automatically: canary p99 \d+ ms is above 1.50 × the baseline's p99 \d+ ms/,
      );
      console.log(`# ${i} calls over both replicas; audit: ${rolledBack!.reason}`);
      await waitFor(
        async () => holding(await status()) === 'replica-a:1,replica-b:1',
        30_000,
        'the canary version unloaded on both replicas',
      );

      // 3. A golden dataset evaluated on the registry's own host (its one-worker pool), both versions.
      assert.equal((await cli('registry', 'dataset', 'upload', 'coco128', coco128Dir)).code, 0);
      const evaluate = async (v: string) => {
        const ev = await cli('registry', 'evaluate', 'det', v, '--dataset', 'coco128', '--json');
        assert.equal(ev.code, 0, ev.stderr);
        return JSON.parse(ev.stdout) as { images: number; map50: number; map5095: number };
      };
      const e = await evaluate('1');
      assert.equal(e.images, 128);
      assert.ok(e.map50 > 0.49, `yolox_nano mAP@0.5 ${e.map50}`);
      const e2 = await evaluate('2');
      assert.ok(e2.map5095 > e.map5095, `yolov8n ${e2.map5095} over yolox_nano ${e.map5095}`);

      // 4. A promote gated on both: the map gate (from the evaluations) passes, the agreement gate
      // (from the replicas' shadow, ended but kept) fails: refused; forced, it rolls out to both replicas.
      const gates = ['--require', 'map50_95>=active', '--require', 'agreement>=0.9'];
      const again = await cli('registry', 'promote', 'det', '2', ...gates);
      assert.equal(again.code, 1);
      assert.match(
        again.stderr,
        new RegExp(`refused by 1 gate\\(s\\): ${gateFailed}; evidence: evaluation on coco128@1: v2 map50 `),
      );
      const forced = await cli('registry', 'promote', 'det', '2', ...gates, '--force', '--wait', '2m');
      assert.equal(forced.code, 0, forced.stderr);
      assert.deepEqual(
        (await status()).replicas.map((r) => [r.replica, r.servingVersion]),
        [
          ['replica-a', 2],
          ['replica-b', 2],
        ],
        'both replicas serve version 2',
      );
      const promoted = (await audit()).filter((x) => x.action === 'promote' && x.target === 'det@2');
      assert.deepEqual(
        promoted.map((x) => x.outcome),
        ['error', 'error', 'ok'],
      );
      assert.match(
        promoted[2]!.reason,
        new RegExp(
          `^FORCED past 1 failed gate\\(s\\); gates: map50_95 0\\.\\d{3} >= active = 0\\.\\d{3} \\(coco128@1\\): passed; ${gateFailed}; ` +
            `evidence: evaluation on coco128@1: v2 .*, active v1 .*; shadow ${shadow.trial.id} against v1: ${shadow.samples} samples, agreement ${agreement}`,
        ),
      );
      console.log(`# audit: ${promoted[2]!.reason}`);
    } finally {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
