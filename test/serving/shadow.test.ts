/**
 * Shadows in role all, as an operator runs them (the `sightline` CLI against a real server, real
 * models, real coco128 images): a version against itself agrees fully, and a byte-different copy of
 * it passes an agreement gate; yolo11n_int8_320 against yolov8n_int8 does not agree, class by class,
 * and the same gate refuses it with the measured agreement; every sampled request is compared or
 * counted as dropped; no live call fails or names another version; stopping the shadow unloads the
 * candidate; a server restarted mid-shadow keeps adding to the evidence.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadYoloDataset } from '../../src/eval/index.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir, type TestServer } from '../support/server.js';
import { coco128Dir, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';
import { pick, scrape } from '../observability/support.js';

const haveData = sharedDataOrSkip('shadow');

interface Report {
  trial: { id: number; version: number; baselineVersion: number; outcome: string };
  replicas: number;
  samples: number;
  failed: number;
  dropped: Record<string, number>;
  /** Absent without samples (and the latencies without comparable pairs): never 0 for "none". */
  agreementMean?: number;
  agreementP10?: number;
  classes: { name: string; matched: number; missing: number; extra: number }[];
  latencyPairs: number;
  latencyRatio?: number;
  activeLatencyP99Ms?: number;
  candidateLatencyP99Ms?: number;
}

interface AuditEntry {
  action: string;
  target: string;
  outcome: string;
  reason: string;
}

/** A server with one model, shadows waiting long enough for idle capacity that none is dropped on this busy machine. */
const server = (file: string, dataDir?: string) =>
  startTestServer({
    models: [{ name: 'det', path: modelPath(file) }],
    // latencyThreads 0: live requests run on one-thread sessions like shadow runs, so latencies compare.
    pool: { workers: 2, warmupRuns: 1, latencyThreads: 0, maxQueue: 8 },
    fleet: { replicaName: 'solo', reportIntervalMs: 200 },
    shadow: { maxQueue: 64, maxWaitMs: 60_000 },
    ...(dataDir ? { registry: { dataDir, cacheDir: join(dataDir, 'cache') } } : {}),
  });

const dropped = (r: Report) => Object.values(r.dropped).reduce((a, b) => a + b, 0);

/** Waits until `n` sampled requests (all of them, at sample 1) are compared, failed or dropped, and returns the report. */
async function accounted(cli: (...args: string[]) => Promise<{ stdout: string }>, n: number): Promise<Report> {
  const { value } = await waitFor(
    async () => {
      const x = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as Report;
      return x.samples + x.failed + dropped(x) === n && x;
    },
    120_000,
    `${n} sampled requests accounted for`,
  );
  return value;
}

async function audit(dataDir: string): Promise<AuditEntry[]> {
  const r = await runCli(['audit', '--data-dir', dataDir, '--json']);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as AuditEntry);
}

/** `n` coco128 images from `from`, one Detect call at a time (one worker stays free for the shadow); every answer checked. */
async function traffic(srv: TestServer, n: number, from = 0): Promise<{ versions: Set<string>; failed: string[] }> {
  const images = (await loadYoloDataset(coco128Dir)).images.slice(from, from + n);
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
  test('a version against itself: agreement 1.0 over >= 50 samples, and an identical copy passes an agreement gate', async () => {
    const srv = await server('yolo11n_int8_320.onnx');
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address]);
    const copyDir = tempDataDir();
    try {
      const started = await cli(
        'registry',
        'shadow',
        'start',
        'det',
        '1',
        '--sample',
        '100%',
        '--reason',
        'determinism',
      );
      assert.equal(started.code, 0, started.stderr);
      assert.match(
        started.stdout,
        new RegExp(
          String.raw`^shadow \d+ of det version 1 against version 1, 100 % of requests, started .* by .*: running\n` +
            String.raw` {2}0 samples from 0 replica\(s\): agreement mean –, p10 –; confidence shift of matched boxes –; 0 failed; dropped none\n`,
        ),
      );
      // No samples yet: the measurements are absent, not 0.
      const none = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as Report;
      assert.deepEqual(
        ['agreementMean', 'agreementP10', 'confidenceShift', 'latencyRatio', 'activeLatencyP99Ms'].filter(
          (k) => k in none,
        ),
        [],
      );
      const n = 60;
      const live = await traffic(srv, n);
      assert.deepEqual(live.failed, [], 'no live call failed');
      assert.deepEqual([...live.versions], ['1'], 'every answer names the active version');
      // Every sampled request ends compared, failed or dropped: nothing is lost without a count.
      const r = await accounted(cli, n);
      console.log(
        `# self-shadow: ${r.samples} samples, agreement ${r.agreementMean} (p10 ${r.agreementP10}), dropped ${JSON.stringify(r.dropped)}, ` +
          `latency ratio ${r.latencyRatio?.toFixed(2)} over ${r.latencyPairs} pairs, p99 ${r.activeLatencyP99Ms} / ${r.candidateLatencyP99Ms} ms`,
      );
      assert.ok(r.samples >= 50, `${r.samples} samples`);
      assert.deepEqual([r.agreementMean, r.agreementP10, r.failed, r.replicas], [1, 1, 0, 1]);
      assert.ok(r.classes.every((c) => c.missing === 0 && c.extra === 0));
      assert.ok(r.activeLatencyP99Ms! > 0 && r.candidateLatencyP99Ms! > 0, 'both p99s of the latency pairs');
      assert.match(
        (await cli('registry', 'shadow', 'report', 'det')).stdout,
        /\n {2}latency \(\d+ comparable pairs\): active mean \d+(\.\d)? ms p99 \d+(\.\d)? ms, candidate mean \d+(\.\d)? ms p99 \d+(\.\d)? ms, ratio \d\.\d\d\n/,
      );

      // The same model as another version (one unknown protobuf field appended: other bytes, the same
      // answers) shadowed, then promoted through an agreement gate, whose verdict and the shadow's
      // evidence go into the promote's audit entry.
      const copy = join(copyDir, 'yolo11n-copy.onnx');
      writeFileSync(
        copy,
        Buffer.concat([readFileSync(modelPath('yolo11n_int8_320.onnx')), Buffer.from([0xc0, 0x3e, 2])]),
      );
      assert.match((await cli('registry', 'upload', copy, '--model', 'det')).stdout, /uploaded det version 2/);
      const waited = await cli('registry', 'shadow', 'start', 'det', '2', '--sample', '1', '--wait', '60s');
      assert.equal(waited.code, 0, waited.stderr);
      assert.match(waited.stdout, /^shadow \d+ of det version 2: warm on (0|1)\/1 replica\(s\)\n/);
      assert.match(
        waited.stdout,
        /\nshadow \d+ of det version 2: warm on 1\/1 replica\(s\)\nshadow \d+ of det version 2 against version 1/,
      );
      assert.equal((await traffic(srv, n, n)).failed.length, 0);
      const copied = await accounted(cli, n);
      assert.deepEqual(
        [copied.agreementMean, copied.dropped.not_loaded],
        [1, undefined],
        'nothing dropped as not_loaded',
      );
      const promoted = await cli(
        'registry',
        'promote',
        'det',
        '2',
        '--require',
        'agreement>=0.9',
        '--reason',
        'same model',
      );
      assert.equal(promoted.code, 0, promoted.stderr);
      const entry = (await audit(srv.dataDir)).find((e) => e.action === 'promote' && e.target === 'det@2');
      assert.equal(entry?.outcome, 'ok');
      assert.match(
        entry!.reason,
        new RegExp(
          `^gates: agreement 1\\.000 >= 0\\.9 \\(shadow ${copied.trial.id}, ${copied.samples} samples\\): passed; evidence: no evaluation; ` +
            `shadow ${copied.trial.id} against v1 \\(running\\): ${copied.samples} samples, agreement 1\\.000 \\(p10 1\\.000\\)`,
        ),
      );
      console.log(`# audit: ${entry!.reason}`);
    } finally {
      await srv.close();
      rmSync(copyDir, { recursive: true, force: true });
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
      assert.equal((await cli('registry', 'shadow', 'start', 'det', '2', '--sample', '1', '--wait')).code, 0);
      const n = 64;
      const live = await traffic(srv, n);
      assert.deepEqual(live.failed, [], 'no live call failed');
      assert.deepEqual([...live.versions], ['1'], 'the shadow never answers a client');
      const r = await accounted(cli, n);
      const human = await cli('registry', 'shadow', 'report', 'det');
      console.log(human.stdout.replace(/^/gm, '# '));
      assert.ok(r.samples >= 50, `${r.samples} samples`);
      assert.ok(r.agreementMean! < 0.9 && r.agreementMean! > 0.3, `agreement ${r.agreementMean}`);
      assert.ok(r.agreementP10! < r.agreementMean!);
      assert.ok(r.classes.some((c) => c.missing > 0) && r.classes.some((c) => c.extra > 0), 'boxes missing and extra');
      assert.ok(r.latencyPairs > 0 && r.latencyRatio! < 0.7, `the 320 model is faster: ratio ${r.latencyRatio}`);

      // An agreement gate refuses the candidate, naming the gate and the measured agreement, with the
      // shadow's evidence; the refusal is audited with it; the pointer stays.
      const refused = await cli('registry', 'promote', 'det', '2', '--require', 'agreement>=0.9');
      assert.equal(refused.code, 1);
      const agreement = r.agreementMean!.toFixed(3).replace('.', '\\.');
      const evidence =
        `evidence: no evaluation; shadow ${r.trial.id} against v1 \\(running\\): ${r.samples} samples, ` +
        `agreement ${agreement} \\(p10 0\\.\\d{3}\\), latency ratio 0\\.\\d{3}`;
      assert.match(
        refused.stderr,
        new RegExp(
          `^sightline: FAILED_PRECONDITION: promotion of det version 2 refused by 1 gate\\(s\\): ` +
            `agreement ${agreement} >= 0\\.9 \\(shadow ${r.trial.id}, ${r.samples} samples\\): failed; ${evidence} \\(--force overrides\\)\\n$`,
        ),
      );
      console.log(`# ${refused.stderr.trim()}`);
      const entry = (await audit(srv.dataDir)).find((e) => e.action === 'promote' && e.target === 'det@2');
      assert.equal(entry?.outcome, 'error');
      assert.match(
        entry!.reason,
        new RegExp(`refused by 1 gate\\(s\\): agreement ${agreement} >= 0\\.9 .*; ${evidence}`),
      );
      assert.equal(
        (JSON.parse((await cli('registry', 'status', 'det', '--json')).stdout) as { activeVersion: number })
          .activeVersion,
        1,
      );
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

  test('a server restarted mid-shadow keeps adding to its evidence (its new process counts from zero)', async () => {
    const dataDir = tempDataDir();
    let srv = await server('yolo11n_int8_320.onnx', dataDir);
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address]);
    try {
      assert.equal((await cli('registry', 'shadow', 'start', 'det', '1', '--sample', '1', '--wait')).code, 0);
      const n = 20;
      assert.deepEqual((await traffic(srv, n)).failed, []);
      const before = await accounted(cli, n);
      assert.ok(before.samples > 0, `${before.samples} samples before the restart`);
      await srv.close();

      srv = await server('yolo11n_int8_320.onnx', dataDir);
      const after = JSON.parse((await cli('registry', 'shadow', 'report', 'det', '--json')).stdout) as Report;
      assert.deepEqual(
        [after.trial.id, after.trial.outcome, after.samples],
        [before.trial.id, 'running', before.samples],
        'the same shadow runs on, its evidence kept',
      );
      assert.deepEqual((await traffic(srv, n, n)).failed, []);
      // 2n sampled requests over both processes: the new one's 20 add to the old one's, not replace them.
      const total = await accounted(cli, 2 * n);
      console.log(`# restart mid-shadow: ${before.samples} samples before, ${total.samples} after ${n} more requests`);
      assert.ok(total.samples > before.samples, `${total.samples} > ${before.samples}`);
      assert.equal(total.replicas, 1, 'one replica (two processes of it)');
    } finally {
      await srv.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
