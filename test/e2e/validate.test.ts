/** Accuracy on coco128 with `sightline validate` (COCO 101-point mAP, Ultralytics val settings). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { coco128Dir, cocoLabelsFile, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('validate');

interface Report {
  metrics: { map50: number; map5095: number; numGt: number; perClass: unknown[] };
  images: number;
  model: { family: string };
  settings: { applyIccProfile: boolean; decoder: string; jpegDctScaling: boolean };
}

describe('sightline validate on coco128', { skip: !haveData }, () => {
  const cases = [
    // Independent pipeline: 0.604 / 0.453; Ultralytics publishes 0.605 / 0.446 for fp32 YOLOv8n.
    { file: 'yolov8n_int8.onnx', family: 'ultralytics', min50: 0.59, args: [] as string[] },
    // Independent pipeline: 0.503 / 0.335.
    { file: 'yolox_nano.onnx', family: 'yolox', min50: 0.49, args: ['--labels', cocoLabelsFile] },
  ];
  for (const c of cases) {
    test(`${c.file}: mAP@0.5 >= ${c.min50}`, async () => {
      const r = await runCli(['validate', '--model', modelPath(c.file), '--dataset', coco128Dir, '--json', ...c.args]);
      assert.equal(r.code, 0, r.stderr);
      const rep = JSON.parse(r.stdout) as Report;
      console.log(
        `# ${c.file}: mAP@0.5 ${rep.metrics.map50.toFixed(3)}, mAP@0.5:0.95 ${rep.metrics.map5095.toFixed(3)} on ${rep.images} images`,
      );
      assert.equal(rep.images, 128);
      assert.equal(rep.metrics.numGt, 929);
      assert.equal(rep.model.family, c.family);
      assert.ok(rep.metrics.map50 >= c.min50, `mAP@0.5 ${rep.metrics.map50}`);
      assert.ok(
        rep.metrics.map5095 > 0.3 && rep.metrics.map5095 < rep.metrics.map50,
        `mAP@0.5:0.95 ${rep.metrics.map5095}`,
      );
      assert.deepEqual([rep.settings.applyIccProfile, rep.settings.decoder], [false, 'auto']);
    });
  }
  // coco128's photos are ~640 px wide, so only a model taking at most half of that is fed images the
  // decoder scales in the IDCT (1/2 here): the one case where the two paths can differ. Scaling must
  // cost no accuracy; it may gain some (it low-passes before shrinking, where INTER_LINEAR at 2:1 is a
  // box filter: +0.007 here, docs/BENCHMARKS.md), so the bound is one-sided.
  test('yolo11n_int8_320: JPEG DCT scaling scores no lower than the full decode (0.003 mAP@0.5:0.95)', async () => {
    const run = async (extra: string[]): Promise<Report> => {
      const args = ['validate', '--model', modelPath('yolo11n_int8_320.onnx'), '--dataset', coco128Dir, '--json'];
      const r = await runCli([...args, ...extra]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Report;
    };
    const scaled = await run([]);
    const full = await run(['--no-dct-scaling']);
    assert.deepEqual([scaled.settings.jpegDctScaling, full.settings.jpegDctScaling], [true, false]);
    const f3 = (x: number) => x.toFixed(3);
    console.log(
      `# yolo11n_int8_320 mAP@0.5 / mAP@0.5:0.95: DCT scaling ${f3(scaled.metrics.map50)} / ${f3(scaled.metrics.map5095)}, ` +
        `full decode ${f3(full.metrics.map50)} / ${f3(full.metrics.map5095)}`,
    );
    assert.ok(
      scaled.metrics.map5095 >= full.metrics.map5095 - 0.003,
      `${scaled.metrics.map5095} vs ${full.metrics.map5095}`,
    );
    assert.ok(full.metrics.map5095 > 0.25, `full decode mAP@0.5:0.95 ${full.metrics.map5095}`);
  });
  test('--icc --decoder sharp scores with profiles applied and every image decoded by sharp', async () => {
    const r = await runCli([
      'validate',
      '--model',
      modelPath('yolox_nano.onnx'),
      '--labels',
      cocoLabelsFile,
      '--dataset',
      coco128Dir,
      '--limit',
      '16',
      '--icc',
      '--decoder',
      'sharp',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as Report;
    assert.equal(rep.images, 16);
    assert.deepEqual([rep.settings.applyIccProfile, rep.settings.decoder], [true, 'sharp']);
  });
});

describe('CLI', () => {
  test('--help works on every command', async () => {
    for (const args of [['--help'], ['serve', '--help'], ['detect', '--help'], ['validate', '--help']]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /Usage: sightline/);
    }
  });
  test('a bad flag value fails with a clear message', async () => {
    const r = await runCli(['detect', '--image', 'x.jpg', '--conf', 'high']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /expected a number in \[0, 1\]/);
  });
  test('an invalid config fails before starting, naming the field', async () => {
    const r = await runCli(['serve', '--workers', '0']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /pool\.workers/);
  });
});
