/**
 * serving's DriftMonitor without a server: traffic profiles stored once complete, stored profiles read back,
 * gauges only for windows of minSamples or more and only when the window changed, anomaly counting with
 * the sampled log line, calibration profiles replacing a traffic profile in collection, and a replica's
 * profiles read from and stored in the registry.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildProfile, type FeatureSample } from '../../src/monitoring/index.js';
import { DriftMonitor, PROFILE_KIND, type DriftSettings, type ProfileStore } from '../../src/serving/drift.js';
import type { Logger } from '../../src/telemetry/logger.js';
import type { Metrics } from '../../src/telemetry/metrics.js';

const SETTINGS: DriftSettings = {
  enabled: true,
  windowSize: 50,
  trafficProfileSize: 20,
  minSamples: 10,
  psiWarning: 0.1,
  psiDrift: 0.25,
  alpha: 0.01,
  anomalyK: 1.5,
  updateIntervalMs: 60_000, // the tests call flush() themselves
  anomalyLogIntervalMs: 1000,
};

const TARGET = { model: 'det', version: 3, names: ['person', 'car'] };

/** A plausible request; `i` spreads the values so profiles have non-zero ranges. */
function sample(i: number, over: Partial<FeatureSample> = {}): FeatureSample {
  const j = (i % 10) / 10;
  return {
    brightness: 100 + 40 * j,
    contrast: 50 + 10 * j,
    meanR: 110 + 30 * j,
    meanG: 100 + 30 * j,
    meanB: 90 + 30 * j,
    saturation: 0.3 + 0.2 * j,
    width: 640,
    height: 480 + 10 * (i % 3),
    aspectRatio: 640 / (480 + 10 * (i % 3)),
    detectionCount: 1 + (i % 4),
    meanConfidence: 0.5 + 0.3 * j,
    maxConfidence: 0.6 + 0.3 * j,
    classCounts: { 0: 1 + (i % 2), 1: i % 3 },
    ...over,
  };
}

function fakes() {
  const stored = new Map<string, unknown>();
  const store: ProfileStore = {
    getProfile: (m, v, k) =>
      stored.has(`${m}/${v}/${k}`) ? { body: JSON.parse(JSON.stringify(stored.get(`${m}/${v}/${k}`))) } : undefined,
    putProfile: (m, v, k, body) => stored.set(`${m}/${v}/${k}`, body),
  };
  const gauges: { feature: string; psi: number; ks: number }[] = [];
  const anomalies: string[] = [];
  const metrics = {
    setDrift: (_m: string, _v: string, feature: string, psi: number, ks: number) => gauges.push({ feature, psi, ks }),
    countAnomaly: (_m: string, _v: string, feature: string) => anomalies.push(feature),
  } as unknown as Metrics;
  const warnings: Record<string, unknown>[] = [];
  const log = { info: () => undefined, warn: (o: Record<string, unknown>) => warnings.push(o) } as unknown as Logger;
  let clock = 1_000_000;
  const now = () => clock;
  const advance = (ms: number) => (clock += ms);
  return { stored, store, gauges, anomalies, metrics, warnings, log, now, advance };
}

test('traffic profile: the first trafficProfileSize requests, stored once; later requests fill the window', () => {
  const f = fakes();
  const m = new DriftMonitor(SETTINGS, { store: f.store, metrics: f.metrics, log: f.log, now: f.now });
  try {
    for (let i = 0; i < 19; i++) m.onSample(TARGET, sample(i));
    let v = m.view('det', 3);
    assert.equal(v.profile, null);
    assert.equal(v.collected, 19);
    assert.equal(v.target, 20);
    assert.equal(f.stored.size, 0);

    m.onSample(TARGET, sample(19));
    v = m.view('det', 3);
    assert.equal(v.profile?.source, 'traffic');
    assert.equal(v.profile?.n, 20);
    assert.equal(v.windowSize, 0, 'profile requests are not in the window');
    assert.ok(f.stored.has(`det/3/${PROFILE_KIND}`));

    // A second monitor (a restart) reads it back.
    const again = new DriftMonitor(SETTINGS, { store: f.store, log: f.log });
    again.activate('det', 3);
    assert.equal(again.view('det', 3).profile?.source, 'traffic');
    again.close();
  } finally {
    m.close();
  }
});

test('gauges: none under minSamples; flush publishes only changed windows; the report and the gauges agree', async () => {
  const f = fakes();
  const m = new DriftMonitor(SETTINGS, { store: f.store, metrics: f.metrics, log: f.log, now: f.now });
  try {
    await m.setProfile(
      'det',
      3,
      buildProfile(
        Array.from({ length: 40 }, (_, i) => sample(i)),
        'calibration',
      ),
    );
    for (let i = 0; i < 9; i++) m.onSample(TARGET, sample(i));
    m.flush();
    assert.equal(f.gauges.length, 0, '9 < minSamples');
    m.onSample(TARGET, sample(9, { brightness: 139 }));
    m.flush();
    assert.equal(f.gauges.length, 13, '12 features and the class mix');
    const report = m.view('det', 3).report!;
    const b = f.gauges.find((g) => g.feature === 'brightness')!;
    assert.equal(b.psi, report.features.find((x) => x.feature === 'brightness')!.psi);
    assert.ok(Number.isNaN(f.gauges.find((g) => g.feature === 'classMix')!.ks), 'no KS for the class mix');
    f.gauges.length = 0;
    m.flush();
    assert.equal(f.gauges.length, 0, 'nothing changed since');
  } finally {
    m.close();
  }
});

test('anomalies: counted per feature on every request, logged at most once per interval with the count in between', async () => {
  const f = fakes();
  const m = new DriftMonitor(SETTINGS, { store: f.store, metrics: f.metrics, log: f.log, now: f.now });
  try {
    await m.setProfile(
      'det',
      3,
      buildProfile(
        Array.from({ length: 40 }, (_, i) => sample(i)),
        'calibration',
      ),
    );
    m.onSample(TARGET, sample(1));
    assert.equal(f.anomalies.length, 0, 'a normal request');
    const odd = sample(2, { width: 8000, aspectRatio: 16 });
    m.onSample(TARGET, odd);
    m.onSample(TARGET, odd);
    assert.deepEqual(f.anomalies, ['width', 'aspectRatio', 'width', 'aspectRatio']);
    assert.equal(f.warnings.length, 1, 'second one suppressed');
    assert.equal(f.warnings[0]!.event, 'drift_anomaly');
    f.advance(1000);
    m.onSample(TARGET, odd);
    assert.equal(f.warnings.length, 2);
    assert.equal(f.warnings[1]!.unlogged, 1);
    assert.equal(m.view('det', 3).anomalies, 3);
  } finally {
    m.close();
  }
});

test('a calibration profile replaces one being collected; a bad stored profile is ignored; disabled does nothing', async () => {
  const f = fakes();
  f.stored.set(`det/4/${PROFILE_KIND}`, { version: 1, source: 'nonsense' });
  const m = new DriftMonitor(SETTINGS, { store: f.store, metrics: f.metrics, log: f.log, now: f.now });
  try {
    for (let i = 0; i < 5; i++) m.onSample(TARGET, sample(i));
    await m.setProfile(
      'det',
      3,
      buildProfile(
        Array.from({ length: 30 }, (_, i) => sample(i)),
        'calibration',
      ),
    );
    for (let i = 0; i < 30; i++) m.onSample(TARGET, sample(i));
    const v = m.view('det', 3);
    assert.equal(v.profile?.source, 'calibration');
    assert.equal(v.windowSize, 30);
    assert.equal(v.report?.features.find((x) => x.feature === 'brightness')?.verdict, 'stable');

    m.activate('det', 4);
    assert.equal(m.view('det', 4).profile, null, 'unreadable profile: collect a traffic one');
    assert.ok(f.warnings.some((w) => w.event === 'drift_profile_unreadable'));

    m.onModelChange({ type: 'version_deleted', model: 'det', version: 3, activeVersion: 4 });
    assert.equal(m.view('det', 3).windowSize, 0, 'state of a deleted version dropped');
  } finally {
    m.close();
  }
  f.gauges.length = 0;
  const off = new DriftMonitor({ ...SETTINGS, enabled: false }, { store: f.store, metrics: f.metrics, log: f.log });
  for (let i = 0; i < 40; i++) off.onSample(TARGET, sample(i));
  off.flush();
  off.close();
  assert.equal(f.gauges.length, 0);
  assert.equal(f.stored.has(`det/3/${PROFILE_KIND}`), true);
});

test('a replica: the registry profile replaces a traffic one; a read that started before a newer profile was set is dropped', async () => {
  const f = fakes();
  const stored = new Map<string, unknown>();
  const pending: (() => void)[] = [];
  const puts: (string | undefined)[] = [];
  // The registry over the network: reads answer when the test says so.
  const remote = {
    getProfile: (model: string, version: number) =>
      new Promise<unknown>((resolve) => pending.push(() => resolve(stored.get(`${model}/${version}`) ?? null))),
    putProfile: async (model: string, version: number, profile: unknown, authorization: string | undefined) => {
      if (authorization === 'Bearer wrong') throw new Error('PERMISSION_DENIED');
      puts.push(authorization);
      stored.set(`${model}/${version}`, profile);
    },
  };
  const answer = async () => {
    for (const r of pending.splice(0)) r();
    await new Promise((r) => setImmediate(r));
  };
  const m = new DriftMonitor(SETTINGS, { remote, metrics: f.metrics, log: f.log, now: f.now });
  try {
    const older = buildProfile(
      Array.from({ length: 12 }, (_, i) => sample(i)),
      'calibration',
    );
    stored.set('det/3', older);
    m.activate('det', 3);
    assert.equal(m.view('det', 3).profile, null, 'collecting a traffic profile until the registry answers');
    await answer();
    assert.equal(m.view('det', 3).profile?.n, 12, 'the registry profile is used');

    // A read starts (another replica stored something), then this replica sets a newer profile first.
    m.onModelChange({ type: 'profile_updated', model: 'det', version: 3, activeVersion: 3 });
    const newer = buildProfile(
      Array.from({ length: 30 }, (_, i) => sample(i)),
      'calibration',
    );
    await m.setProfile('det', 3, newer, 'Bearer caller');
    assert.deepEqual(puts, ['Bearer caller'], "stored with the caller's credentials");
    stored.set('det/3', older); // what the read that started earlier answers
    await answer();
    assert.equal(m.view('det', 3).profile?.n, 30, 'the stale read is dropped');

    await assert.rejects(m.setProfile('det', 3, older, 'Bearer wrong'), /PERMISSION_DENIED/);
    assert.equal(m.view('det', 3).profile?.n, 30, 'a profile the registry refused is not used');
  } finally {
    m.close();
  }
});
