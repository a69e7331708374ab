/**
 * Promoting with evidence, as an operator does it with the `sightline` CLI against a real server:
 * coco128 uploaded as a golden dataset (encrypted at rest, like model files), both versions evaluated
 * with the serving pipeline, and a map gate that refuses yolo11n_int8_320 over yolov8n_int8 with the
 * numbers, lets --force through (audited as forced), and passes the reverse. Every promote's evidence
 * is in its audit entry.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadYoloDataset } from '../../src/eval/index.js';
import { generateKey } from '../../src/registry/index.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir } from '../support/server.js';
import { coco128Dir, imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('promotion with evidence');

interface Evaluation {
  dataset: string;
  datasetVersion: number;
  images: number;
  boxes: number;
  map50: number;
  map5095: number;
  latencyP99Ms: number;
  perClass: { name: string; ap50: number }[];
}

describe('golden datasets, evaluations and gated promotes', { skip: !haveData }, () => {
  test('a map gate refuses the weaker version with its numbers, --force overrides, the reverse passes', async () => {
    const keyDir = tempDataDir();
    const keyFile = join(keyDir, 'key');
    writeFileSync(keyFile, generateKey().toString('hex'));
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolov8n_int8.onnx') }],
      pool: { workers: 2, warmupRuns: 1 },
      encryption: { keyFile },
      // A configured gate every promote of det passes here, beside the ones each promote adds.
      promotion: { require: { det: ['p99<=10*active'] } },
    });
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address], { timeoutMs: 300_000 });
    try {
      assert.match(
        (await cli('registry', 'upload', modelPath('yolo11n_int8_320.onnx'), '--model', 'det')).stdout,
        /uploaded det version 2/,
      );

      // 1. coco128 as a golden dataset: stored once, encrypted at rest like model files.
      const up = await cli('registry', 'dataset', 'upload', 'coco128', coco128Dir, '--notes', 'Ultralytics coco128');
      assert.equal(up.code, 0, up.stderr);
      assert.match(
        up.stdout,
        /^uploaded dataset coco128 version 1: 128 images, 929 boxes, 80 class names, \d+\.\d MB \(sha256 [0-9a-f]{64}\)\n$/,
      );
      assert.match(
        (await cli('registry', 'dataset', 'upload', 'coco128', coco128Dir)).stdout,
        /^already stored: dataset coco128 version 1/,
      );
      assert.match(
        (await cli('registry', 'dataset', 'list')).stdout,
        /^coco128@1 {2}[0-9a-f]{12} {2}128 images {2}929 boxes .* Ultralytics coco128\n$/,
      );
      const blobDir = join(srv.dataDir, 'blobs', 'sha256');
      const image = readFileSync((await loadYoloDataset(coco128Dir)).images[0]!.path);
      const onDisk = readdirSync(blobDir).map((f) => readFileSync(join(blobDir, f)));
      assert.ok(
        onDisk.length > 200 && onDisk.every((b) => b.subarray(0, 6).toString('latin1') === 'SLENC1'),
        'every blob is encrypted',
      );
      assert.ok(
        onDisk.every((b) => b.indexOf(image.subarray(1000, 1064)) === -1),
        'no plain image bytes on disk',
      );

      // 2. Both versions scored with the serving pipeline; versions and show print it.
      const evaluate = async (v: string, ref: string) => {
        const r = await cli('registry', 'evaluate', 'det', v, '--dataset', ref, '--json');
        assert.equal(r.code, 0, r.stderr);
        return JSON.parse(r.stdout) as Evaluation;
      };
      const v8 = await evaluate('1', 'coco128');
      const v11 = await evaluate('2', 'coco128@1');
      console.log(
        `# yolov8n_int8: mAP@0.5 ${v8.map50.toFixed(3)}, mAP@0.5:0.95 ${v8.map5095.toFixed(3)}, ` +
          `p99 ${v8.latencyP99Ms.toFixed(0)} ms; yolo11n_int8_320: ${v11.map50.toFixed(3)}, ` +
          `${v11.map5095.toFixed(3)}, p99 ${v11.latencyP99Ms.toFixed(0)} ms`,
      );
      assert.deepEqual([v8.images, v8.boxes, v8.dataset, v8.datasetVersion], [128, 929, 'coco128', 1]);
      // As `sightline validate` scores them (test/e2e/validate.test.ts): the same pipeline.
      assert.ok(
        v8.map50 >= 0.59 && v11.map50 < v8.map50 && v11.map5095 < v8.map5095 - 0.005,
        `${v8.map50} ${v11.map50}`,
      );
      assert.ok(v8.perClass.some((c) => c.name === 'person' && c.ap50 > 0.5));
      const versions = (await cli('registry', 'versions', 'det')).stdout;
      assert.match(
        versions,
        /^det v1 .*\n {2}coco128@1: mAP@0\.5 0\.\d{3}, mAP@0\.5:0\.95 0\.\d{3}, latency p50 \d+ ms p99 \d+ ms \(128 images, cpu, /,
      );
      assert.match(versions, /\ndet v2 .*\n {2}coco128@1: mAP@0\.5 /);
      assert.match(
        (await cli('registry', 'show', 'det', '1')).stdout,
        /\n {4}person +AP50 0\.\d{3} {2}AP50-95 0\.\d{3} {2}\(\d+ boxes\)\n/,
      );

      // 3. The weaker version is refused with the numbers, and the pointer stays.
      const gate = ['--require', 'map50_95>=active-0.005'];
      const refused = await cli('registry', 'promote', 'det', '2', ...gate);
      assert.equal(refused.code, 1);
      assert.match(
        refused.stderr,
        new RegExp(
          /^sightline: FAILED_PRECONDITION: promotion of det version 2 refused by 1 gate\(s\): /.source +
            /map50_95 0\.\d{3} >= active-0\.005 = 0\.\d{3} \(coco128@1\): failed; /.source +
            /evidence: evaluation on coco128@1: v2 map50 0\.\d{3} map50_95 0\.\d{3} p99 \d+(\.\d)? ms, active v1 map50 /
              .source,
        ),
      );
      console.log(`# ${refused.stderr.trim()}`);
      const status = async () =>
        JSON.parse((await cli('registry', 'status', 'det', '--json')).stdout) as { activeVersion: number };
      assert.equal((await status()).activeVersion, 1);
      const bad = await cli('registry', 'promote', 'det', '2', '--require', 'accuracy>=0.9');
      assert.match(bad.stderr, /INVALID_ARGUMENT: gate "accuracy>=0.9": unknown metric "accuracy"/);

      // 4. --force overrides, audited as forced; 5. the reverse passes the same gate.
      assert.equal(
        (await cli('registry', 'promote', 'det', '2', ...gate, '--force', '--reason', 'smaller input for the edge'))
          .code,
        0,
      );
      assert.equal((await status()).activeVersion, 2);
      const reverse = await cli('registry', 'promote', 'det', '1', ...gate, '--reason', 'back to the better model');
      assert.equal(reverse.code, 0, reverse.stderr);
      assert.equal((await status()).activeVersion, 1);

      const audit = await runCli(['audit', '--data-dir', srv.dataDir, '--json']);
      const entries = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; target: string; outcome: string; reason: string });
      const promotes = entries.filter((e) => e.action === 'promote');
      const of = (target: string, outcome: string) =>
        promotes.filter((e) => e.target === target && e.outcome === outcome).map((e) => e.reason);
      assert.match(of('det@2', 'error')[0]!, /refused by 1 gate/);
      assert.match(
        of('det@2', 'ok')[0]!,
        new RegExp(
          /^FORCED past 1 failed gate\(s\); gates: p99 \d+(\.\d)? <= 10\*active = \d+ \(coco128@1\): passed; /.source +
            /map50_95 0\.\d{3} >= active-0\.005 = 0\.\d{3} \(coco128@1\): failed; evidence: evaluation on coco128@1: /
              .source,
        ),
      );
      assert.match(
        of('det@1', 'ok').at(-1)!,
        new RegExp(
          /^gates: p99 .*: passed; map50_95 0\.\d{3} >= active-0\.005 = 0\.\d{3} \(coco128@1\): passed; /.source +
            /evidence: evaluation on coco128@1: v1 .*, active v2 .*; no shadow$/.source,
        ),
      );
      assert.ok(
        entries.some(
          (e) =>
            e.action === 'dataset' &&
            e.target === 'coco128' &&
            /^uploaded: version 1, 128 images, 929 boxes/.test(e.reason),
        ),
      );
      assert.ok(
        entries.some(
          (e) => e.action === 'evaluate' && e.target === 'det@2' && /^coco128@1: map50 0\.\d{3}/.test(e.reason),
        ),
      );
    } finally {
      await srv.close();
      rmSync(keyDir, { recursive: true, force: true });
    }
  });

  test('a dataset that is not YOLO is refused, saying which file and why', async () => {
    const dir = tempDataDir();
    const srv = await startTestServer({ pool: { workers: 1, warmupRuns: 0 } });
    try {
      mkdirSync(join(dir, 'images'));
      mkdirSync(join(dir, 'labels'));
      writeFileSync(join(dir, 'images', 'a.jpg'), readFileSync(imagePath('bus.jpg')));
      writeFileSync(join(dir, 'labels', 'a.txt'), '0 0.5 0.5 0.2\n');
      const r = await runCli(['registry', 'dataset', 'upload', 'broken', dir, '--server', srv.address]);
      assert.equal(r.code, 1);
      assert.match(
        r.stderr,
        /^sightline: INVALID_ARGUMENT: dataset file "labels\/a.txt": label line 1 is not 'class cx cy w h': 0 0.5 0.5 0.2\n$/,
      );
      assert.match((await runCli(['registry', 'dataset', 'list', '--server', srv.address])).stdout, /^no datasets\n$/);
      assert.deepEqual(readdirSync(join(srv.dataDir, 'blobs', 'sha256')), [], 'the refused upload left no blob behind');
    } finally {
      await srv.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
