import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SightlineError } from '../../src/errors.js';
import {
  DriftWindow,
  FEATURE_NAMES,
  ProfileBuilder,
  anomalies,
  anomalyBounds,
  buildProfile,
  formatReport,
  parseProfile,
  type FeatureDrift,
  type FeatureName,
  type FeatureSample,
  type DriftReport,
} from '../../src/monitoring/index.js';

/** Deterministic PRNG (mulberry32) and Box-Muller normals, so the statistics below are reproducible. */
function rng(seed: number): { uniform: () => number; normal: (mean: number, std: number) => number } {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = (mean: number, std: number): number =>
    mean + std * Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

interface Shift {
  brightness?: number;
  classes?: number[];
}

/** Synthetic traffic: 640x480 or 480x640 photos, a few detections of class 0 or 1. */
function traffic(n: number, seed: number, shift: Shift = {}): FeatureSample[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => {
    const b = r.normal(110 + (shift.brightness ?? 0), 20);
    const portrait = r.uniform() < 0.25;
    const count = Math.floor(r.uniform() * 6);
    const classes = shift.classes ?? [0, 1];
    const classCounts: Record<number, number> = {};
    for (let i = 0; i < count; i++) {
      const c = classes[Math.floor(r.uniform() * classes.length)];
      classCounts[c] = (classCounts[c] ?? 0) + 1;
    }
    const conf = count ? 0.5 + 0.4 * r.uniform() : 0;
    return {
      brightness: b,
      contrast: r.normal(55, 10),
      meanR: b + r.normal(5, 5),
      meanG: b + r.normal(0, 5),
      meanB: b + r.normal(-10, 5),
      saturation: Math.min(1, Math.max(0, r.normal(0.35, 0.12))),
      width: portrait ? 480 : 640,
      height: portrait ? 640 : 480,
      aspectRatio: portrait ? 0.75 : 4 / 3,
      detectionCount: count,
      meanConfidence: conf,
      maxConfidence: count ? Math.min(1, conf + 0.05) : 0,
      classCounts,
    };
  });
}

function feature(r: DriftReport, f: FeatureName): FeatureDrift {
  const x = r.features.find((d) => d.feature === f);
  assert.ok(x, f);
  return x;
}

const windowOf = (samples: FeatureSample[], capacity = 500): DriftWindow => {
  const w = new DriftWindow(capacity);
  for (const s of samples) w.push(s);
  return w;
};

test('buildProfile: sorted capped samples, edges and counts, summaries; JSON round trip', () => {
  const p = buildProfile(traffic(1000, 1), 'calibration', {
    sampleCap: 200,
    createdAt: new Date(0),
    modelVersion: 'v3',
  });
  assert.equal(p.n, 1000);
  assert.equal(p.source, 'calibration');
  assert.equal(p.createdAt, '1970-01-01T00:00:00.000Z');
  assert.equal(p.modelVersion, 'v3');
  for (const name of FEATURE_NAMES) {
    const f = p.features[name];
    assert.ok(f.sample.length <= 200, name);
    assert.ok(
      f.sample.every((v, i) => i === 0 || f.sample[i - 1] <= v),
      `${name} sorted`,
    );
    assert.equal(f.sample[0], f.summary.min, `${name} keeps the min`);
    assert.equal(f.sample[f.sample.length - 1], f.summary.max, `${name} keeps the max`);
    assert.equal(f.counts.length, f.edges.length + 1);
    assert.equal(
      f.counts.reduce((a, b) => a + b, 0),
      1000,
    );
    assert.ok(f.p01 <= f.p25 && f.p25 <= f.p75 && f.p75 <= f.p99);
  }
  assert.equal(p.features.brightness.sample.length, 200);
  assert.equal(p.features.brightness.edges.length, 9);
  // width is 480 or 640 only: each value is a point mass with a bin of its own, instead of 9 edges.
  const w = p.features.width;
  assert.deepEqual(w.edges.filter(Number.isInteger), [480, 640]);
  assert.deepEqual(w.counts.filter((c) => c > 0).length, 2);
  assert.deepEqual(Object.keys(p.classMix), ['0', '1']);
  assert.deepEqual(parseProfile(JSON.parse(JSON.stringify(p))), p);
});

test('parseProfile refuses what is not a profile, with INVALID_INPUT', () => {
  const good = JSON.parse(JSON.stringify(buildProfile(traffic(50, 2), 'traffic'))) as Record<string, unknown>;
  const isInvalid = (e: unknown): boolean => e instanceof SightlineError && e.code === 'INVALID_INPUT';
  assert.throws(() => parseProfile(null), isInvalid);
  assert.throws(() => parseProfile({ ...good, version: 2 }), isInvalid);
  assert.throws(() => parseProfile({ ...good, features: {} }), isInvalid);
  assert.throws(() => parseProfile({ ...good, classMix: { 0: -1 } }), isInvalid);
  assert.throws(() => buildProfile([], 'traffic'), RangeError);
  assert.throws(() => buildProfile([{ ...traffic(1, 3)[0], brightness: Number.NaN }], 'traffic'), RangeError);
});

test('ProfileBuilder returns the profile once, on the Nth sample', () => {
  const b = new ProfileBuilder(3, 'traffic', { now: () => new Date(1000) });
  const [s1, s2, s3, s4] = traffic(4, 4);
  assert.equal(b.add(s1), undefined);
  assert.equal(b.add(s2), undefined);
  assert.equal(b.complete, false);
  const p = b.add(s3);
  assert.ok(p);
  assert.equal(p.n, 3);
  assert.equal(p.source, 'traffic');
  assert.equal(p.createdAt, new Date(1000).toISOString());
  assert.equal(b.add(s4), undefined, 'later samples are ignored');
  assert.equal(b.count, 3);
  assert.equal(b.build(), p);
  assert.deepEqual(p.features, buildProfile([s1, s2, s3], 'traffic').features);
});

test('DriftWindow is a ring buffer: keeps the newest samples and their class totals', () => {
  const w = new DriftWindow(3);
  const s = traffic(5, 5).map((x, i) => ({ ...x, brightness: i, classCounts: { [i]: 1 } }));
  for (const x of s) w.push(x);
  assert.equal(w.size, 3);
  assert.deepEqual([...w.values('brightness')].sort(), [2, 3, 4]);
  assert.deepEqual(w.classCounts(), { 2: 1, 3: 1, 4: 1 });
  w.clear();
  assert.equal(w.size, 0);
  assert.deepEqual(w.classCounts(), {});
});

test('same distribution: every feature stable; a brightness shift drifts brightness only', () => {
  const profile = buildProfile(traffic(1000, 10), 'calibration');
  const same = windowOf(traffic(500, 11)).report(profile);
  for (const f of same.features) {
    assert.equal(f.verdict, 'stable', `${f.feature} psi ${f.psi}`);
    assert.ok(f.psi !== null && f.psi < 0.1, `${f.feature} psi ${f.psi}`);
    assert.ok(f.ks !== null && f.ks < 0.1, `${f.feature} ks ${f.ks}`);
  }
  assert.equal(same.classMix.verdict, 'stable');
  assert.equal(same.verdict, 'stable');
  assert.equal(same.windowSize, 500);

  // +1 std: a large, obvious shift.
  const shifted = windowOf(traffic(500, 12, { brightness: 20 })).report(profile);
  const b = feature(shifted, 'brightness');
  assert.ok(b.psi !== null && b.psi > 0.25, `psi ${b.psi}`);
  assert.ok(b.ks !== null && b.ks > 0.3, `ks ${b.ks}`);
  assert.equal(b.verdict, 'drift');
  assert.equal(feature(shifted, 'saturation').verdict, 'stable');
  assert.equal(feature(shifted, 'width').verdict, 'stable');
  assert.equal(shifted.verdict, 'drift');

  // +0.35 std lands between the thresholds.
  const mild = feature(windowOf(traffic(500, 13, { brightness: 7 })).report(profile), 'brightness');
  assert.ok(mild.psi !== null && mild.psi >= 0.1 && mild.psi < 0.25, `psi ${mild.psi}`);
  assert.equal(mild.verdict, 'warning');

  const text = formatReport(shifted);
  assert.match(text, /brightness .* drift/);
  assert.match(text, /overall drift/);
});

test('class mix: a new class in the window drifts, with a tiny chi-square p-value', () => {
  const profile = buildProfile(traffic(1000, 20), 'calibration');
  const r = windowOf(traffic(300, 21, { classes: [0, 7] })).report(profile);
  assert.equal(r.classMix.verdict, 'drift');
  assert.ok(r.classMix.psi !== null && r.classMix.psi > 0.25);
  assert.ok(r.classMix.pValue !== null && r.classMix.pValue < 1e-6);
  assert.equal(r.classMix.dof, 2);
  assert.equal(r.verdict, 'drift');
});

test('thresholds: too few requests → insufficient_data; configurable PSI cut-offs; alpha', () => {
  const profile = buildProfile(traffic(1000, 30), 'calibration');
  const small = windowOf(traffic(29, 31, { brightness: 40 })).report(profile);
  assert.ok(small.features.every((f) => f.verdict === 'insufficient_data'));
  assert.equal(small.verdict, 'insufficient_data');
  assert.ok((feature(small, 'brightness').psi ?? 0) > 0.25, 'values are still computed');
  assert.equal(new DriftWindow().report(profile).verdict, 'insufficient_data');

  const w = windowOf(traffic(500, 32, { brightness: 9 }));
  assert.equal(feature(w.report(profile, { psiWarning: 0.01, psiDrift: 0.05 }), 'brightness').verdict, 'drift');
  assert.equal(feature(w.report(profile, { psiWarning: 1, psiDrift: 2 }), 'brightness').verdict, 'stable');
  assert.throws(() => w.report(profile, { psiWarning: 0.3, psiDrift: 0.2 }), RangeError);

  // 40 requests against 1000: PSI's noise floor is 9·(1/1000 + 1/40) = 0.23, so an unshifted window can
  // cross 0.1 by chance; the significance guard keeps it stable, alpha = 1 shows what PSI alone would say.
  const noisy = windowOf(traffic(40, 33)).report(profile);
  const noisyPsi = Math.max(...noisy.features.map((f) => f.psi ?? 0));
  assert.ok(noisyPsi > 0.1, `max psi ${noisyPsi}`);
  assert.ok(noisy.features.every((f) => f.verdict === 'stable'));
  const raw = windowOf(traffic(40, 33)).report(profile, { alpha: 1 });
  assert.ok(raw.features.some((f) => f.verdict !== 'stable'));
});

test('anomalies: outside [p01 − k·IQR, p99 + k·IQR] of the reference', () => {
  const profile = buildProfile(traffic(1000, 40), 'calibration');
  const normal = traffic(1, 41)[0];
  assert.deepEqual(anomalies({ ...normal, brightness: 110 }, profile), []);
  const black = { ...normal, brightness: 0, meanR: 0, meanG: 0, meanB: 0, contrast: 0 };
  assert.deepEqual(anomalies(black, profile), ['brightness', 'contrast', 'meanR', 'meanG', 'meanB']);
  const huge = { ...normal, width: 20000, aspectRatio: 20000 / 480, detectionCount: 300 };
  assert.deepEqual(anomalies(huge, profile), ['width', 'aspectRatio', 'detectionCount']);
  assert.deepEqual(anomalies(huge, profile, { features: ['width'] }), ['width']);

  const b = anomalyBounds(profile, 1.5).brightness;
  const f = profile.features.brightness;
  assert.equal(b.low, f.p01 - 1.5 * (f.p75 - f.p25));
  assert.equal(b.high, f.p99 + 1.5 * (f.p75 - f.p25));
  // A larger k widens the fence: just outside at k = 0 is inside at k = 1.5.
  const edge = { ...normal, brightness: f.p99 + 1 };
  assert.deepEqual(anomalies(edge, profile, { k: 0, features: ['brightness'] }), ['brightness']);
  assert.deepEqual(anomalies(edge, profile, { features: ['brightness'] }), []);
  assert.deepEqual(anomalies({ ...normal, saturation: Number.NaN }, profile, { features: ['saturation'] }), [
    'saturation',
  ]);
});
