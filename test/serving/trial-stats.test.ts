/** Shadow and canary tallies: counted per replica, summed by the registry, judged against margins. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compareDetections } from '../../src/eval/index.js';
import {
  addCanaryRequest,
  addComparison,
  addDrop,
  canaryVerdict,
  emptyCanaryTally,
  emptyShadowTally,
  latencyQuantile,
  mergeCanary,
  mergeShadow,
  parseTally,
  summarizeCanary,
  summarizeShadow,
  type Histogram,
} from '../../src/serving/trial-stats.js';

const box = (x: number, classId = 0) => ({ classId, confidence: 0.8, xMin: x, yMin: 0, xMax: x + 10, yMax: 10 });

describe('shadow tallies', () => {
  test('two replicas summed: samples, agreement mean and p10, per-class differences, drops, latency ratio', () => {
    const a = emptyShadowTally();
    const b = emptyShadowTally();
    for (let i = 0; i < 9; i++)
      addComparison(a, compareDetections([box(0)], [box(0)]), { activeMs: 100, candidateMs: 50 });
    addComparison(b, compareDetections([box(0), box(20)], [box(0), box(40, 2)]), null);
    addDrop(b, 'busy');
    addDrop(b, 'busy');
    addDrop(a, 'not_loaded');
    const s = summarizeShadow(mergeShadow([a, b]), ['person', 'bicycle', 'car']);
    assert.deepEqual([s.samples, s.droppedTotal, s.dropped], [10, 3, { not_loaded: 1, busy: 2 }]);
    assert.ok(Math.abs(s.agreementMean! - 9.5 / 10) < 1e-12);
    assert.equal(s.agreementP10, 0.5, 'the lowest tenth: the one image at 0.5');
    assert.deepEqual(s.classes, [
      { classId: 0, name: 'person', matched: 10, missing: 1, extra: 0 },
      { classId: 2, name: 'car', matched: 0, missing: 0, extra: 1 },
    ]);
    assert.equal(s.latency?.pairs, 9);
    assert.equal(s.latency?.ratio, 0.5);
  });

  test("a replica's tally is checked field by field", () => {
    const good = emptyShadowTally();
    addComparison(good, compareDetections([box(0)], [box(0)]), null);
    assert.deepEqual(parseTally('shadow', JSON.parse(JSON.stringify(good))), good);
    assert.throws(() => parseTally('shadow', { ...good, samples: -1 }), /samples is not a non-negative number/);
    assert.throws(() => parseTally('shadow', { ...good, dropped: { lazy: 1 } }), /unknown drop reason "lazy"/);
    assert.throws(
      () =>
        parseTally('canary', {
          baseline: { requests: 1, errors: 0, ms: { x: 1 } },
          canary: { requests: 0, errors: 0, ms: {} },
        }),
      /has bucket "x"/,
    );
  });
});

describe('canary tallies', () => {
  test('p99 from merged log buckets is within 5 %', () => {
    const h: Histogram = {};
    const t = emptyCanaryTally();
    for (let i = 1; i <= 1000; i++) addCanaryRequest(t, 'baseline', i, false);
    const p99 = latencyQuantile(mergeCanary([t, t]).baseline.ms, 0.99);
    assert.ok(p99 >= 990 && p99 <= 990 * 1.05, `p99 ${p99}`);
    assert.ok(Number.isNaN(latencyQuantile(h, 0.5)));
  });

  test('rolled back when slower or failing beyond the margins, and only over the minimum sample', () => {
    const t = emptyCanaryTally();
    const margins = { minSamples: 20, p99Margin: 0.2, errorRateMargin: 0.01 };
    for (let i = 0; i < 30; i++) addCanaryRequest(t, 'baseline', 50, false);
    for (let i = 0; i < 19; i++) addCanaryRequest(t, 'canary', 250, false);
    assert.equal(canaryVerdict(summarizeCanary(t), margins), null, '19 canary requests: not judged yet');
    addCanaryRequest(t, 'canary', 250, false);
    assert.match(
      canaryVerdict(summarizeCanary(t), margins)!,
      /^canary p99 2\d\d ms is above 1.20 × the baseline's p99 5\d ms \(canary.p99Margin 0.2\), over 20 canary and 30 baseline requests$/,
    );
    const e = emptyCanaryTally();
    for (let i = 0; i < 20; i++) addCanaryRequest(e, 'baseline', 50, false);
    for (let i = 0; i < 20; i++) addCanaryRequest(e, 'canary', 50, i < 2);
    assert.match(
      canaryVerdict(summarizeCanary(e), margins)!,
      /^canary error rate 10.00 % is above the baseline's 0.00 % \+ 1.00 %/,
    );
    const fine = emptyCanaryTally();
    for (let i = 0; i < 20; i++) {
      addCanaryRequest(fine, 'baseline', 50, false);
      addCanaryRequest(fine, 'canary', 55, false);
    }
    assert.equal(canaryVerdict(summarizeCanary(fine), margins), null);
  });
});
