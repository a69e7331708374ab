/**
 * Shadows in role all, as an operator runs them (the `sightline` CLI against a real server, real
 * models, real coco128 images): a version against itself agrees fully; yolo11n_int8_320 against
 * yolov8n_int8 does not, class by class; every sampled request is compared or counted as dropped; no
 * live call fails or names another version; stopping the shadow unloads the candidate.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { loadYoloDataset } from '../../src/eval/index.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { coco128Dir, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';
import { pick, scrape } from '../observability/support.js';

const haveData = sharedDataOrSkip('shadow');

interface Report {
  trial: { version: number; baselineVersion: number; outcome: string };
  replicas: number;
  samples: number;
  failed: number;
  dropped: Record<string, number>;
  agreementMean: number;
  agreementP10: number;
  classes: { name: string; matched: number; missing: number; extra: number }[];
  latencyPairs: number;
  latencyRatio: number;
}

/** A server with one model, shadows waiting long enough for idle capacity that none is dropped on this busy machine. */
const server = (file: string) =>
  startTestServer({
    models: [{ name: 'det', path: modelPath(file) }],
    // latencyThreads 0: live requests run on one-thread sessions like shadow runs, so latencies compare.
    pool: { workers: 2, warmupRuns: 1, latencyThreads: 0, maxQueue: 8 },
    fleet: { replicaName: 'solo', reportIntervalMs: 200 },
    shadow: { maxQueue: 64, maxWaitMs: 60_000 },
  });

/** `n` coco128 images, one Detect call at a time (one worker stays free for the shadow); every answer checked. */
async function traffic(srv: TestServer, n: number): Promise<{ versions: Set<string>; failed: string[] }> {
  const images = (await loadYoloDataset(coco128Dir)).images.slice(0, n);
  const out = { versions: new Set<string>(), failed: [] as string[] };
  for (const img of images) {
    await srv.detect({ image: readFileSync(img.path) }, { deadlineMs: 30_000 }).then(
      (r) => out.versions.add(r.version),
      (e: Error) => out.failed.push(e.message),
    );
  }
  return out;
}

describe('shadow in role all', { skip: !haveData }, () => {
  test('a version against itself: agreement 1.0 over >= 50 samples, every sampled request accounted for, no live call failed', async () => {
    const srv = await server('yolo11n_int8_320.onnx');
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address]);
    try {
      const started = await cli('registry', 'shadow', 'start', 'det', '1', '--sample', '1', '--reason', 'determinism');
      assert.equal(started.code, 0, started.stderr);
      assert.match(
        started.stdout,
        /^shadow \d+ of det version 1 against version 1, 100 % of requests, started .* by .*: running\n/,
      );
      const n = 60;
      const live = await traffic(srv, n);
      assert.deepEqual(live.failed, [], 'no live call failed');
      assert.deepEqual([...live.versions], ['1'], 'every answer names the active version');
      // Every sampled request ends compared, failed or dropped: nothing is lost without a count.
      const report = async () =>
        JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as Report;
      const { value: r } = await waitFor(
        async () => {
          const x = await report();
          return x.samples + x.failed + Object.values(x.dropped).reduce((a, b) => a + b, 0) === n && x;
        },
        60_000,
        `${n} sampled requests accounted for`,
      );
      console.log(
        `# self-shadow: ${r.samples} samples, agreement ${r.agreementMean} (p10 ` +
          `${r.agreementP10}), dropped ${JSON.stringify(r.dropped)}, ` +
          `latency ratio ${r.latencyRatio.toFixed(2)} over ${r.latencyPairs} pairs`,
      );
      assert.ok(r.samples >= 50, `${r.samples} samples`);
      assert.deepEqual([r.agreementMean, r.agreementP10, r.failed, r.replicas], [1, 1, 0, 1]);
      assert.ok(r.classes.every((c) => c.missing === 0 && c.extra === 0));
    } finally {
      await srv.close();
    }
  });

  test('yolo11n_int8_320 against yolov8n_int8 on coco128: agreement clearly below 1, per class; stop unloads the candidate', async () => {
    const srv = await server('yolov8n_int8.onnx');
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address]);
    try {
      assert.match(
        (await cli('registry', 'upload', modelPath('yolo11n_int8_320.onnx'), '--model', 'det')).stdout,
        /uploaded det version 2/,
      );
      assert.equal((await cli('registry', 'shadow', 'start', 'det', '2', '--sample', '1')).code, 0);
      const n = 64;
      const live = await traffic(srv, n);
      assert.deepEqual(live.failed, [], 'no live call failed');
      assert.deepEqual([...live.versions], ['1'], 'the shadow never answers a client');
      const { value: r } = await waitFor(
        async () => {
          const x = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as Report;
          return x.samples + x.failed + Object.values(x.dropped).reduce((a, b) => a + b, 0) === n && x;
        },
        120_000,
        `${n} sampled requests accounted for`,
      );
      const human = await cli('registry', 'shadow', 'report', 'det');
      console.log(human.stdout.replace(/^/gm, '# '));
      assert.ok(r.samples >= 50, `${r.samples} samples`);
      assert.ok(r.agreementMean < 0.9 && r.agreementMean > 0.3, `agreement ${r.agreementMean}`);
      assert.ok(r.agreementP10 < r.agreementMean);
      assert.ok(r.classes.some((c) => c.missing > 0) && r.classes.some((c) => c.extra > 0), 'boxes missing and extra');
      assert.ok(r.latencyPairs > 0 && r.latencyRatio < 0.7, `the 320 model is faster: ratio ${r.latencyRatio}`);
      assert.match(human.stdout, /\n {2}class {12}matched {2}missing {2}extra/);
      assert.match(human.stdout, /\n {2}person +\d+ +\d+ +\d+\n/);

      // Per active/candidate pair in the metrics.
      const e = (await scrape(srv.app.admin!.port)).exposition;
      const pair = { sightline_model: 'det', sightline_model_version: '1', sightline_shadow_version: '2' };
      assert.equal(
        pick(e, 'sightline_shadow_requests_total', { ...pair, sightline_shadow_outcome: 'compared' })[0]?.value,
        r.samples,
      );
      assert.equal(pick(e, 'sightline_shadow_agreement_count', pair)[0]?.value, r.samples);
      assert.ok(pick(e, 'sightline_shadow_boxes_total', { ...pair, sightline_shadow_box: 'active_only' }).length > 0);
      assert.equal(
        pick(e, 'sightline_shadow_duration_seconds_count', { ...pair, sightline_shadow_arm: 'candidate' })[0]?.value,
        r.latencyPairs,
      );

      const stopped = await cli('registry', 'shadow', 'stop', 'det', '--json');
      assert.equal(stopped.code, 0, stopped.stderr);
      assert.equal((JSON.parse(stopped.stdout) as Report).trial.outcome, 'stopped');
      await waitFor(
        async () => {
          const s = JSON.parse((await cli('registry', 'status', 'det', '--json')).stdout) as {
            replicas: { versions: { version: number }[] }[];
            shadow: unknown;
          };
          return s.shadow === null && s.replicas[0]!.versions.map((v) => v.version).join() === '1';
        },
        30_000,
        'the candidate unloaded',
      );
    } finally {
      await srv.close();
    }
  });
});
