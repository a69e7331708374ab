/** Memory is released when versions are unloaded: repeated promotes do not grow RSS. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { measureSwapRss } from '../../bench/swap-rss.js';
import { sharedDataOrSkip } from '../support/data.js';
import { cocoLabelsFile, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('swap-memory');

describe('memory over hot swaps', { skip: !haveData }, () => {
  test('15 promotes through three versions: RSS stays within one version plus a margin of the steady state', async () => {
    // Each promote loads one version and drains another.
    const r = await measureSwapRss(
      [
        { file: modelPath('yolo11n_int8_320.onnx') },
        { file: modelPath('yolox_nano.onnx'), labels: readFileSync(cocoLabelsFile, 'utf8').trim().split('\n') },
        { file: modelPath('yolov8n_int8.onnx') },
      ],
      15,
    );
    console.log(
      `# RSS: one version ${r.rssOneVersionMb.toFixed(0)} MB, +1 version ` +
        `${r.versionFootprintMb.toFixed(0)} MB, steady ${r.rssSteadyMb.toFixed(0)} MB, ` +
        `after ${r.promotes} promotes ${r.rssAfterMb.toFixed(0)} MB (max ${r.rssMaxMb.toFixed(0)} ` +
        `MB)`,
    );
    // Steady state holds two versions (active + warm rollback target); one version's share of it is
    // steady − one-version RSS. Allowed: steady + one more version + 40 MB.
    const oneVersion = r.rssSteadyMb - r.rssOneVersionMb;
    const bound = r.rssSteadyMb + oneVersion + 40;
    assert.ok(
      r.rssMaxMb <= bound,
      `RSS reached ${r.rssMaxMb.toFixed(0)} MB, bound ${bound.toFixed(0)} MB; samples ${r.samplesMb.map((x) => x.toFixed(0)).join(' ')}`,
    );
  });
});
