/**
 * The registry's trial evidence over a real SQLite database: replicas' tallies as their reports bring
 * them, summed per trial. A restarted process (a new incarnation, counting from zero again) adds to
 * what the one before it sent; a late, older tally of one process never replaces its newer one; the
 * sums outlive the registry itself (a new Trials over the same database file).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EvidenceStore, RegistryStore } from '../../src/registry/index.js';
import type { ReplicaReport } from '../../src/serving/fleet.js';
import { addCanaryRequest, addDrop, emptyCanaryTally, emptyShadowTally } from '../../src/serving/trial-stats.js';
import { Trials, type CanaryTrial } from '../../src/serving/trials.js';
import { migrationsDir, newVersion, tempDir } from '../registry/helpers.js';

/** A shadow tally of `samples` identical comparisons (agreement 1) and `busy` drops. */
function shadowTally(samples: number, busy = 0) {
  const t = emptyShadowTally();
  t.samples = samples;
  t.agreementSum = samples;
  if (samples) t.agreement['100'] = samples;
  for (let i = 0; i < busy; i++) addDrop(t, 'busy');
  return t;
}

const report = (replica: string, incarnation: string, trialId: number, samples: number): ReplicaReport => ({
  replica,
  models: [],
  trials: [{ trialId, model: 'det', incarnation, kind: 'shadow', shadow: shadowTally(samples) }],
});

test('a restarted replica adds to its earlier tally; a stale one is ignored; the sums outlive the registry', (t) => {
  const dir = tempDir(t);
  const store = RegistryStore.open(dir, migrationsDir);
  t.after(() => store.close());
  for (const c of ['v1', 'v2']) store.insertVersion(newVersion('det', c));
  store.promote('det', 1, 'ops', '');
  const names = () => ['person', 'bicycle'];
  const trials = new Trials(new EvidenceStore(store.database), names);
  const { started } = trials.start({
    model: 'det',
    kind: 'shadow',
    version: 2,
    baselineVersion: 1,
    share: 1,
    settings: {},
    actor: 'ops',
  });
  const samples = () => trials.shadowView(trials.open('det', 'shadow')!).summary.samples;

  trials.ingest(report('replica-a', 'first-process', started.id, 30));
  trials.ingest(report('replica-b', 'b', started.id, 10));
  trials.ingest(report('replica-a', 'first-process', started.id, 60));
  assert.equal(samples(), 70);
  // replica-a's container restarts under the same name: its counts start from zero again.
  trials.ingest(report('replica-a', 'second-process', started.id, 2));
  assert.equal(samples(), 72, 'the restart added 2 samples to the 60 before it, not replaced them');
  trials.ingest(report('replica-a', 'second-process', started.id, 5));
  // A late report of the first process (an older, smaller tally) changes nothing.
  trials.ingest(report('replica-a', 'first-process', started.id, 40));
  const view = trials.shadowView(trials.open('det', 'shadow')!);
  assert.deepEqual([view.summary.samples, view.replicas, view.summary.agreementMean], [75, 2, 1]);

  // The registry restarts (a new Trials over the same file): the evidence is all there, and the
  // replicas' next reports (cumulative, same incarnations) keep adding up without double counting.
  const again = new Trials(new EvidenceStore(store.database), names);
  assert.equal(again.shadowView(again.open('det', 'shadow')!).summary.samples, 75);
  again.ingest(report('replica-a', 'second-process', started.id, 9));
  again.ingest(report('replica-b', 'b', started.id, 10));
  assert.equal(again.shadowView(again.open('det', 'shadow')!).summary.samples, 79);
});

test('canary tallies of two incarnations of one replica are summed arm by arm', (t) => {
  const store = RegistryStore.open(tempDir(t), migrationsDir);
  t.after(() => store.close());
  for (const c of ['v1', 'v2']) store.insertVersion(newVersion('det', c));
  store.promote('det', 1, 'ops', '');
  const trials = new Trials(new EvidenceStore(store.database), () => []);
  const { started } = trials.start({
    model: 'det',
    kind: 'canary',
    version: 2,
    baselineVersion: 1,
    share: 0.5,
    settings: { minSamples: 1, p99Margin: 0.2, errorRateMargin: 0.01 },
    actor: 'ops',
  });
  const tally = (baseline: number, canary: number) => {
    const c = emptyCanaryTally();
    for (let i = 0; i < baseline; i++) addCanaryRequest(c, 'baseline', 10, false);
    for (let i = 0; i < canary; i++) addCanaryRequest(c, 'canary', 10, i === 0);
    return c;
  };
  for (const [incarnation, b, c] of [
    ['one', 20, 18],
    ['two', 3, 4],
  ] as const)
    trials.ingest({
      replica: 'solo',
      models: [],
      trials: [{ trialId: started.id, model: 'det', incarnation, kind: 'canary', canary: tally(b, c) }],
    });
  const v = trials.canaryView(trials.open('det', 'canary') as CanaryTrial);
  assert.deepEqual(
    [v.replicas, v.summary.baseline.requests, v.summary.canary.requests, v.summary.canary.errors],
    [1, 23, 22, 2],
  );
});
