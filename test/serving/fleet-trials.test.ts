/**
 * Shadows, canaries and evaluations across a registry and two inference replica processes, through
 * the CLI: the shadow runs on both replicas and the registry sums their tallies; stopping it unloads
 * the candidate everywhere; a slower candidate's canary on both replicas is rolled back by the registry
 * with the reason audited, no Detect call failing; a golden dataset is evaluated on the registry's host.
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
  replicas: { replica: string; versions: { version: number; state: string }[] }[];
  canary: unknown;
}

interface ShadowJson {
  replicas: number;
  samples: number;
  failed: number;
  dropped: Record<string, number>;
  agreementMean: number;
}

describe('shadows, canaries and evaluations across a registry and two replicas', { skip: !haveData }, () => {
  test("the registry sums both replicas' shadow tallies, rolls back a slow canary on both, and evaluates on its own host", async () => {
    const dirs = [tempDataDir(), tempDataDir(), tempDataDir()];
    const [regDir, cacheA, cacheB] = dirs as [string, string, string];
    const procs: ServedProcess[] = [];
    const clients: DetectorClient[] = [];
    const images = ['bus.jpg', 'zidane.jpg'].map((f) => readFileSync(imagePath(f)));
    try {
      const registry = await serveProcess([
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
      ]);
      procs.push(registry);
      for (const [name, cache] of [
        ['replica-a', cacheA],
        ['replica-b', cacheB],
      ] as const) {
        const p = await serveProcess(['--role', 'inference', '--registry', registry.address, '--workers', '1'], {
          SIGHTLINE_REGISTRY__CACHE_DIR: cache,
          SIGHTLINE_FLEET__REPLICA_NAME: name,
          SIGHTLINE_FLEET__REPORT_INTERVAL_MS: '300',
          SIGHTLINE_POOL__WARMUP_RUNS: '1',
          SIGHTLINE_POOL__MAX_QUEUE: '16',
          SIGHTLINE_POOL__LATENCY_THREADS: '0',
          SIGHTLINE_SHADOW__MAX_WAIT_MS: '30000',
          SIGHTLINE_SHADOW__MAX_QUEUE: '32',
        });
        procs.push(p);
        clients.push(detectorClient(p.address));
      }
      const cli = (...args: string[]) => runCli([...args, '--server', registry.address], { timeoutMs: 300_000 });
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

      // 1. A shadow on both replicas, summed by the registry.
      assert.equal((await cli('registry', 'shadow', 'start', 'det', '2', '--sample', '1')).code, 0);
      await waitFor(
        async () => holding(await status()) === 'replica-a:1+2,replica-b:1+2',
        60_000,
        'both replicas holding the candidate',
      );
      const n = 12;
      await Promise.all(
        clients.map(async (c) => {
          for (let i = 0; i < n; i++) await call(c, i);
        }),
      );
      const { value: shadow } = await waitFor(
        async () => {
          const r = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as ShadowJson;
          return (
            r.replicas === 2 &&
            r.samples + r.failed + Object.values(r.dropped).reduce((a, b) => a + b, 0) === 2 * n &&
            r
          );
        },
        60_000,
        "both replicas' sampled requests accounted for",
      );
      console.log(
        `# shadow over 2 replicas: ${shadow.samples} samples, agreement ${shadow.agreementMean.toFixed(3)}, dropped ${JSON.stringify(shadow.dropped)}`,
      );
      assert.ok(shadow.samples >= n, `${shadow.samples} samples`);
      assert.ok(shadow.agreementMean < 1, 'yolov8n and yolox_nano do not agree box for box');
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
      const audit = await runCli(['audit', '--data-dir', regDir, '--json']);
      const rolledBack = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; target: string; outcome: string; reason: string })
        .find((e) => e.action === 'canary' && e.outcome === 'error');
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

      // 3. A golden dataset evaluated on the registry's own host (its one-worker pool).
      assert.equal((await cli('registry', 'dataset', 'upload', 'coco128', coco128Dir)).code, 0);
      const ev = await cli('registry', 'evaluate', 'det', '1', '--dataset', 'coco128', '--json');
      assert.equal(ev.code, 0, ev.stderr);
      const e = JSON.parse(ev.stdout) as { images: number; map50: number };
      assert.equal(e.images, 128);
      assert.ok(e.map50 > 0.49, `yolox_nano mAP@0.5 ${e.map50}`);
    } finally {
      for (const c of clients) c.close();
      await Promise.all(procs.map((p) => p.kill('SIGKILL')));
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });
});
