/** Promotion gates: the syntax, and verdicts from evidence (pure; the registry's own use is in test/e2e/promotion.test.ts). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SightlineError } from '../../src/errors.js';
import {
  checkGates,
  parseGate,
  promotionGates,
  type Evidence,
  type EvaluationReport,
  type ShadowSummary,
} from '../../src/serving/index.js';

const report = (map50: number, map5095: number, p99Ms: number): EvaluationReport => ({
  datasetSha256: 'a'.repeat(64),
  images: 128,
  boxes: 929,
  map50,
  map5095,
  precision: 0.7,
  recall: 0.5,
  perClass: [],
  latency: { p50Ms: p99Ms / 2, p99Ms, meanMs: p99Ms / 2 },
  settings: { confThreshold: 0.001, iouThreshold: 0.7, maxDetections: 300 },
  provider: 'cpu',
  seconds: 10,
});

const shadow = (samples: number, agreement: number): ShadowSummary => ({
  samples,
  failed: 0,
  dropped: {},
  droppedTotal: 0,
  agreementMean: agreement,
  agreementP10: agreement - 0.2,
  matched: 100,
  confidenceShift: 0,
  classes: [],
  latency: { pairs: samples, activeMeanMs: 100, candidateMeanMs: 50, activeP99Ms: 120, candidateP99Ms: 60, ratio: 0.5 },
});

const evidence = (over: Partial<Evidence> = {}): Evidence => ({
  model: 'det',
  version: 2,
  active: 1,
  evaluation: {
    dataset: 'coco128',
    datasetVersion: 1,
    candidate: report(0.453, 0.32, 60),
    active: report(0.606, 0.45, 240),
  },
  shadow: { trialId: 7, running: true, summary: shadow(120, 0.7) },
  ...over,
});

describe('parseGate', () => {
  test('numbers and the active version, with an offset or a factor', () => {
    assert.deepEqual(
      [
        'map50_95>=active-0.005',
        'map50 > 0.5',
        'p99<=1.2*active',
        'p50 < active * 2',
        'agreement>=0.9',
        'map50>=active+1e-3',
      ].map((t) => {
        const g = parseGate(t);
        return [g.metric, g.op, g.scale, g.offset];
      }),
      [
        ['map50_95', '>=', 1, -0.005],
        ['map50', '>', 0, 0.5],
        ['p99', '<=', 1.2, 0],
        ['p50', '<', 2, 0],
        ['agreement', '>=', 0, 0.9],
        ['map50', '>=', 1, 0.001],
      ],
    );
  });

  test('a malformed gate is INVALID_INPUT saying what is wrong', () => {
    const fails = (t: string, re: RegExp) =>
      assert.throws(
        () => parseGate(t),
        (e: SightlineError) => e.code === 'INVALID_INPUT' && re.test(e.message),
      );
    fails('accuracy>=0.9', /unknown metric "accuracy"; one of map50, map50_95/);
    fails('map50 = 0.5', /expected METRIC OP VALUE/);
    fails('map50>=best', /"best" is not a number, active, active\+N, active-N or N\*active/);
    fails('agreement>=active', /measured against the active version already/);
  });
});

describe('checkGates', () => {
  test('each gate with its measured value and threshold', () => {
    const r = checkGates(
      ['map50_95>=active-0.005', 'p99<=1.2*active', 'agreement>=0.9', 'latency_ratio<=1'].map(parseGate),
      evidence(),
      50,
    );
    assert.deepEqual(
      r.map((x) => [x.passed, x.detail]),
      [
        [false, 'map50_95 0.320 >= active-0.005 = 0.445 (coco128@1): failed'],
        [true, 'p99 60.0 <= 1.2*active = 288 (coco128@1): passed'],
        [false, 'agreement 0.700 >= 0.9 (shadow 7, 120 samples): failed'],
        [true, 'latency_ratio 0.500 <= 1 (shadow 7, 120 samples, 120 latency pairs): passed'],
      ],
    );
  });

  test('missing evidence fails the gate and says how to get it', () => {
    const [noEval] = checkGates([parseGate('map50>=0.5')], evidence({ evaluation: null }), 50);
    assert.match(noEval!.detail, /version 2 has no evaluation \(sightline registry evaluate det 2 --dataset NAME\)/);
    const [noActiveEval] = checkGates(
      [parseGate('map50>=active')],
      evidence({
        evaluation: { dataset: 'coco128', datasetVersion: 1, candidate: report(0.5, 0.3, 10), active: null },
      }),
      50,
    );
    assert.match(
      noActiveEval!.detail,
      /active version 1 has no evaluation on coco128@1 \(sightline registry evaluate det 1 --dataset coco128@1\)/,
    );
    const [few] = checkGates(
      [parseGate('agreement>=0.5')],
      evidence({ shadow: { trialId: 3, running: true, summary: shadow(12, 1) } }),
      50,
    );
    assert.match(few!.detail, /only 12 shadow samples, fewer than promotion.minShadowSamples 50/);
    assert.ok([noEval, noActiveEval, few].every((g) => !g!.passed));
  });
});

describe('promotionGates', () => {
  const check = promotionGates(() => evidence(), {
    require: { det: ['map50_95>=active-0.005'], '*': ['agreement>=0.99'] },
    minShadowSamples: 50,
  });
  const ctx = {
    action: 'promote' as const,
    caller: { actor: 'ops', peer: '' },
    active: 1,
    require: [] as string[],
    force: false,
  };

  test('a failing gate refuses with PRECONDITION naming it with its value; --force passes, noted as forced', async () => {
    await assert.rejects(
      check('det', 2, ctx),
      (e: SightlineError) =>
        e.code === 'PRECONDITION' && /refused by 1 gate\(s\): map50_95 0.320 >= active-0.005 = 0.445/.test(e.message),
    );
    const note = await check('det', 2, { ...ctx, force: true });
    assert.match(
      String(note),
      /^FORCED past 1 failed gate\(s\); gates: map50_95 .*: failed; evidence: evaluation on coco128@1: v2 map50 0.453/,
    );
  });

  test('the model\'s own list replaces "*"; per-promote gates add to it; rollbacks and first versions are not gated', async () => {
    await assert.rejects(check('other', 2, ctx), /agreement 0.700 >= 0.99/);
    await assert.rejects(
      check('det', 2, { ...ctx, force: false, require: ['p99<=0.1*active'] }),
      /refused by 2 gate\(s\)/,
    );
    assert.equal(await check('det', 2, { ...ctx, action: 'rollback' }), undefined);
    assert.match(String(await check('det', 2, { ...ctx, active: null })), /no active version is replaced/);
  });

  test('a malformed configured gate stops the start', () => {
    assert.throws(
      () => promotionGates(() => evidence(), { require: { det: ['map50>>1'] }, minShadowSamples: 1 }),
      /gate "map50>>1"/,
    );
  });
});
