/**
 * Gauges of a version the server no longer serves leave /metrics: a retired version's last drift PSI
 * must not keep an alert firing. The real OpenTelemetry SDK and Prometheus serializer, no server.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Metrics } from '../../src/telemetry/metrics.js';
import { parseExposition, pick } from './support.js';

const m = Metrics.create({ serviceVersion: 'test', runtime: false });
after(() => m.shutdown());

const exposition = async () => parseExposition(await m.scrape());
const v = (version: string, extra: Record<string, string> = {}) => ({
  sightline_model: 'det',
  sightline_model_version: version,
  ...extra,
});

test('an unloaded version loses its readiness and drift gauges; its counters stay; a reload starts clean', async () => {
  m.setModelReady('det', '1', true);
  m.setDrift('det', '1', 'brightness', 0.42, 0.31);
  m.setDrift('det', '1', 'classMix', 0.05, Number.NaN);
  m.countAnomaly('det', '1', 'width');
  m.setModelReady('det', '2', false);
  m.setDrift('det', '2', 'brightness', 0.01, 0.02);

  let e = await exposition();
  assert.equal(pick(e, 'sightline_model_ready', v('1'))[0]?.value, 1);
  assert.equal(pick(e, 'sightline_drift_psi', v('1', { sightline_feature: 'brightness' }))[0]?.value, 0.42);
  assert.equal(pick(e, 'sightline_drift_ks', v('1')).length, 1, 'classMix has no KS statistic, so no series');

  m.forgetModel('det', '1');
  e = await exposition();
  for (const name of ['sightline_model_ready', 'sightline_drift_psi', 'sightline_drift_ks']) {
    assert.deepEqual(pick(e, name, v('1')), [], `${name} of the unloaded version is gone`);
    assert.equal(pick(e, name, v('2')).length, 1, `${name} of the loaded version stays`);
  }
  assert.equal(pick(e, 'sightline_anomalies_total', v('1'))[0]?.value, 1, 'counters are cumulative and stay');

  // Loaded again: ready at once; the drift gauges wait for the version's own window, not the old values.
  m.setModelReady('det', '1', true);
  e = await exposition();
  assert.equal(pick(e, 'sightline_model_ready', v('1'))[0]?.value, 1);
  assert.deepEqual(pick(e, 'sightline_drift_psi', v('1')), []);
  m.setDrift('det', '1', 'brightness', 0.07, 0.05);
  e = await exposition();
  assert.equal(pick(e, 'sightline_drift_psi', v('1', { sightline_feature: 'brightness' }))[0]?.value, 0.07);
  assert.equal(pick(e, 'sightline_drift_psi', v('1')).length, 1, 'only the republished feature');
});
