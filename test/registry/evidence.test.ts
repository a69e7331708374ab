/** The evidence tables over a real SQLite file: datasets, evaluations, trials and their tallies. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SightlineError } from '../../src/errors.js';
import { EvidenceStore, RegistryStore } from '../../src/registry/index.js';
import { migrationsDir, newVersion, sha256Of, tempDir } from './helpers.js';

function open(t: Parameters<typeof tempDir>[0]) {
  const store = RegistryStore.open(tempDir(t), migrationsDir);
  t.after(() => store.close());
  return { store, evidence: new EvidenceStore(store.database) };
}

const file = (path: string, content: string) => ({ path, sha256: sha256Of(content), sizeBytes: content.length });

test('dataset versions are numbered per name, found by content, and their files keep blobs referenced', (t) => {
  const { store, evidence } = open(t);
  const files = [file('images/a.jpg', 'jpeg'), file('labels/a.txt', '0 0.5 0.5 0.1 0.1')];
  const d1 = evidence.insertDataset({
    name: 'golden',
    sha256: sha256Of('m1'),
    createdBy: 'ops',
    notes: '',
    images: 1,
    boxes: 1,
    classNames: ['person'],
    files,
  });
  const d2 = evidence.insertDataset({
    name: 'golden',
    sha256: sha256Of('m2'),
    createdBy: 'ops',
    notes: 'relabelled',
    images: 1,
    boxes: 1,
    classNames: [],
    files: files.slice(0, 1),
  });
  assert.deepEqual([d1.version, d2.version, d1.sizeBytes], [1, 2, 4 + 17]);
  assert.equal(evidence.findDatasetBySha('golden', sha256Of('m1'))?.version, 1);
  assert.equal(evidence.getDataset('golden').version, 2, 'version 0: the latest');
  assert.deepEqual(
    evidence.datasetFiles('golden', 1).map((f) => f.path),
    ['images/a.jpg', 'labels/a.txt'],
  );
  assert.ok(store.isBlobReferenced(sha256Of('jpeg')), 'a dataset file keeps its blob');
  assert.throws(
    () => evidence.getDataset('golden', 9),
    (e: SightlineError) => e.code === 'NOT_FOUND' && /dataset "golden" has no version 9/.test(e.message),
  );
  assert.throws(() => evidence.getDataset('nope'), /unknown dataset "nope"/);
});

test('one open trial per kind and model; a candidate in an open trial cannot be deleted; tallies per replica', (t) => {
  const { store, evidence } = open(t);
  for (const c of ['v1', 'v2', 'v3']) store.insertVersion(newVersion('det', c));
  store.promote('det', 1, 'ops', '');
  const shadow = evidence.insertTrial({
    model: 'det',
    kind: 'shadow',
    version: 2,
    baselineVersion: 1,
    share: 0.1,
    settings: {},
    startedBy: 'ops',
  });
  const canary = evidence.insertTrial({
    model: 'det',
    kind: 'canary',
    version: 3,
    baselineVersion: 1,
    share: 0.5,
    settings: { minSamples: 5 },
    startedBy: 'ops',
  });
  assert.throws(
    () =>
      evidence.insertTrial({
        model: 'det',
        kind: 'shadow',
        version: 3,
        baselineVersion: 1,
        share: 0.1,
        settings: {},
        startedBy: 'ops',
      }),
    /UNIQUE constraint failed/,
  );
  assert.deepEqual(
    evidence.openTrials('det').map((x) => [x.kind, x.version]),
    [
      ['shadow', 2],
      ['canary', 3],
    ],
  );
  assert.throws(
    () => store.deleteVersion('det', 2, 'ops', ''),
    (e: SightlineError) => e.code === 'PRECONDITION' && /candidate of a running shadow; stop it first/.test(e.message),
  );

  // One tally per replica and process: a process replaces its own; a restarted one (new incarnation) adds a row.
  evidence.putTrialStats(shadow.id, 'replica-a', 'a1', { samples: 3 });
  evidence.putTrialStats(shadow.id, 'replica-b', 'b1', { samples: 4 });
  evidence.putTrialStats(shadow.id, 'replica-a', 'a1', { samples: 5 });
  evidence.putTrialStats(shadow.id, 'replica-a', 'a2', { samples: 2 });
  assert.deepEqual(
    evidence.trialStats(shadow.id).map((r) => [r.replica, r.incarnation, r.body]),
    [
      ['replica-a', 'a1', { samples: 5 }],
      ['replica-a', 'a2', { samples: 2 }],
      ['replica-b', 'b1', { samples: 4 }],
    ],
  );
  assert.throws(
    () => evidence.putTrialStats(shadow.id, 'replica-a', 'x'.repeat(65), {}),
    (e: SightlineError) => e.code === 'INVALID_INPUT' && /at most 64/.test(e.message),
  );

  assert.equal(evidence.endTrial(shadow.id, 'ops', 'stopped', 'done'), true);
  assert.equal(evidence.endTrial(shadow.id, 'ops', 'stopped', 'again'), false, 'a trial ends once');
  assert.deepEqual(evidence.trial(canary.id)?.settings, { minSamples: 5 });
  store.deleteVersion('det', 2, 'ops', 'the shadow has ended');
  assert.equal(evidence.latestTrial('det', 'shadow')?.outcome, 'stopped', 'the trial outlives its candidate');
});

test('evaluations go with their version', (t) => {
  const { store, evidence } = open(t);
  store.insertVersion(newVersion('det', 'v1'));
  store.insertVersion(newVersion('det', 'v2'));
  store.promote('det', 1, 'ops', '');
  evidence.insertDataset({
    name: 'golden',
    sha256: sha256Of('m'),
    createdBy: 'ops',
    notes: '',
    images: 1,
    boxes: 0,
    classNames: [],
    files: [file('images/a.jpg', 'x')],
  });
  evidence.insertEvaluation({
    model: 'det',
    version: 2,
    dataset: 'golden',
    datasetVersion: 1,
    createdBy: 'ops',
    report: { map50: 0.5 },
  });
  evidence.insertEvaluation({
    model: 'det',
    version: 1,
    dataset: 'golden',
    datasetVersion: 1,
    createdBy: 'ops',
    report: { map50: 0.6 },
  });
  assert.deepEqual(
    evidence.evaluations('det').map((e) => [e.version, e.report]),
    [
      [1, { map50: 0.6 }],
      [2, { map50: 0.5 }],
    ],
    'newest first',
  );
  store.deleteVersion('det', 2, 'ops', '');
  assert.deepEqual(
    evidence.evaluations('det').map((e) => e.version),
    [1],
  );
});
