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
  settings: { applyIccProfile: boolean; decoder: string };
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
