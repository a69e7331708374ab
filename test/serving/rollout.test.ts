/**
 * Rollouts judged from the fleet view: real Fleet and Rollouts, replica reports written by the test
 * (what replicas send), a clock the test moves.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Fleet,
  Rollouts,
  type ReplicaReport,
  type Rollout,
  type RolloutOptions,
  type VersionState,
} from '../../src/serving/index.js';

const caller = { actor: 'ops', peer: 'ipv4:10.0.0.1:5000' };

/** A replica's report of model det: the version it serves, the active version it has heard of, its versions' states. */
function report(
  replica: string,
  serving: number | null,
  heard: number | null,
  versions: [number, VersionState, string?][],
): ReplicaReport {
  return {
    replica,
    models: [
      {
        model: 'det',
        servingVersion: serving,
        activeVersion: heard,
        versions: versions.map(([version, state, error]) => ({
          version,
          state,
          error: error ?? null,
          inflight: 0,
          provider: 'cpu',
        })),
      },
    ],
  };
}

function setup(
  t: { after(fn: () => void): void },
  o: { rollBack?: (r: Rollout) => Promise<number>; realClock?: boolean } = {},
) {
  let now = 1_000_000;
  const clock = o.realClock ? Date.now : () => now;
  const fleet = new Fleet({ replicaTimeoutMs: 15_000, now: clock });
  const ended: Rollout[] = [];
  const updates: Rollout[] = [];
  const rollouts = new Rollouts(fleet, {
    defaultTimeoutMs: 60_000,
    rollBack: o.rollBack ?? (() => Promise.reject(new Error('no rollback here'))),
    onEnd: (r) => ended.push(r),
    now: clock,
  });
  t.after(() => (rollouts.close(), fleet.close()));
  const start = (version: number, o: RolloutOptions = {}) => {
    const r = rollouts.start('det', version, version - 1, 'promote', caller, o);
    rollouts.watch('det', r.id, (u) => updates.push(u));
    return r;
  };
  return { fleet, rollouts, ended, updates, start, advance: (ms: number) => (now += ms) };
}

test('succeeds when every live replica serves the version; progress is ready/total per change', (t) => {
  const { fleet, ended, updates, start } = setup(t);
  fleet.report(report('a', 1, 1, [[1, 'serving']]));
  fleet.report(report('b', 1, 1, [[1, 'serving']]));
  const r = start(2);
  assert.deepEqual([r.phase, r.ready, r.total], ['in_progress', 0, 2]);
  fleet.report(
    report('a', 1, 2, [
      [1, 'serving'],
      [2, 'loading'],
    ]),
  );
  fleet.report(
    report('a', 2, 2, [
      [1, 'ready'],
      [2, 'serving'],
    ]),
  );
  assert.equal(ended.length, 0);
  fleet.report(
    report('b', 2, 2, [
      [1, 'ready'],
      [2, 'serving'],
    ]),
  );
  assert.equal(ended.length, 1);
  assert.equal(ended[0]!.phase, 'succeeded');
  assert.match(ended[0]!.reason, /^2\/2 replica\(s\) serve version 2 after/);
  assert.deepEqual(
    updates.map((u) => [u.phase, u.ready, u.total, u.replicas.map((p) => `${p.replica}:${p.state}`).join(',')]),
    [
      ['in_progress', 0, 2, 'a:null,b:null'],
      ['in_progress', 0, 2, 'a:loading,b:null'],
      ['in_progress', 1, 2, 'a:serving,b:null'],
      ['succeeded', 2, 2, 'a:serving,b:serving'],
    ],
  );
});

test('fails on a replica that heard of the version and cannot load it, naming it and its reason', (t) => {
  const { fleet, ended, start } = setup(t);
  fleet.report(report('a', 1, 1, [[1, 'serving']]));
  fleet.report(
    report('b', 1, 1, [
      [1, 'serving'],
      [2, 'failed', 'an earlier attempt'],
    ]),
  );
  start(2);
  // b still shows the failure of an attempt made before it heard of this rollout: not counted.
  fleet.report(
    report('a', 2, 2, [
      [1, 'ready'],
      [2, 'serving'],
    ]),
  );
  assert.equal(ended.length, 0, 'a failure from before the replica heard of the rollout does not fail it');
  fleet.report(
    report('b', 1, 2, [
      [1, 'serving'],
      [2, 'failed', "its file is 3504119 bytes, over this replica's limit"],
    ]),
  );
  assert.equal(ended.length, 1);
  assert.equal(ended[0]!.phase, 'failed');
  assert.equal(ended[0]!.reason, "b: its file is 3504119 bytes, over this replica's limit");
  assert.equal(ended[0]!.ready, 1);
});

test('times out with the replicas still pending, and with no replica at all', async (t) => {
  const { fleet, ended, start, advance } = setup(t);
  fleet.report(
    report('a', 1, 2, [
      [1, 'serving'],
      [2, 'warming'],
    ]),
  );
  start(2, { timeoutMs: 5_000 });
  advance(5_000);
  fleet.report(
    report('a', 1, 2, [
      [1, 'serving'],
      [2, 'warming'],
    ]),
  );
  assert.equal(ended[0]?.phase, 'failed');
  assert.match(
    ended[0]!.reason,
    /^timed out after 5\.0 s: 0\/1 replica\(s\) serve version 2; waiting for a \(warming\)$/,
  );
  const { ended: none, start: startAlone, advance: later, fleet: empty } = setup(t);
  startAlone(3, { timeoutMs: 1_000 });
  later(1_000);
  empty.report({ replica: 'late', models: [] });
  assert.match(none[0]!.reason, /^timed out after 1\.0 s: /);
  // The timer ends it too, without any report.
  const { ended: quiet, start: startQuiet } = setup(t, { realClock: true });
  startQuiet(4, { timeoutMs: 1 });
  for (let i = 0; i < 100 && quiet.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(quiet[0]?.phase, 'failed');
  assert.match(quiet[0]!.reason, /no replica reports to the registry/);
});

test('a replica that leaves stops counting; a newer pointer change supersedes the rollout', (t) => {
  const { fleet, rollouts, ended, start, advance } = setup(t);
  const session = {};
  fleet.report(report('a', 1, 1, [[1, 'serving']]));
  fleet.report(report('b', 1, 1, [[1, 'serving']]), session);
  start(2);
  fleet.report(report('a', 2, 2, [[2, 'serving']]));
  fleet.end(session);
  assert.equal(ended[0]?.phase, 'succeeded', 'b left (its stream ended): a alone is the fleet');
  start(3);
  advance(16_000); // a stays silent past the replica timeout
  assert.deepEqual(fleet.forModel('det'), [], 'a silent replica is out of the view');
  start(4);
  assert.deepEqual(
    ended.map((r) => [r.version, r.phase]),
    [
      [2, 'succeeded'],
      [3, 'superseded'],
    ],
  );
  assert.match(ended[1]!.reason, /superseded by the promote to version 4 by ops/);
  assert.throws(() => rollouts.watch('other', 0, () => undefined), /no rollout since the registry started/);
});

test('autoRollback: onEnd hears the failure first; the rollback starts before watchers hear the end, which names it', async (t) => {
  let rollbackId = 0;
  const { fleet, rollouts, ended, updates, start } = setup(t, {
    rollBack: async (failed) => {
      assert.deepEqual(
        ended.map((e) => e.reason),
        ['b: cannot load; rolling back to version 1'],
        'the audit log hears of the failure before the rollback',
      );
      assert.equal(updates.at(-1)!.phase, 'in_progress', 'watchers wait for the rollback');
      rollbackId = rollouts.start('det', failed.fromVersion!, failed.version, 'rollback', failed.caller).id;
      return rollbackId;
    },
  });
  fleet.report(report('a', 1, 1, [[1, 'serving']]));
  fleet.report(report('b', 1, 1, [[1, 'serving']]));
  const r = start(2, { autoRollback: true });
  fleet.report(
    report('a', 2, 2, [
      [1, 'ready'],
      [2, 'serving'],
    ]),
  );
  fleet.report(
    report('b', 1, 2, [
      [1, 'serving'],
      [2, 'failed', 'cannot load'],
    ]),
  );
  await new Promise((resolve) => setImmediate(resolve));
  const last = updates.at(-1)!;
  assert.deepEqual([last.id, last.phase, last.rolledBackBy], [r.id, 'failed', rollbackId]);
  assert.equal(last.reason, 'b: cannot load; rolled back to version 1');
  assert.deepEqual(
    ended.map((e) => e.id),
    [r.id],
    'the rollback is a rollout of its own, still running (a serves 2)',
  );
  assert.deepEqual([rollouts.latest('det')!.id, rollouts.latest('det')!.ready], [rollbackId, 1]);
  fleet.report(
    report('a', 1, 1, [
      [1, 'serving'],
      [2, 'ready'],
    ]),
  );
  assert.deepEqual(
    ended.map((e) => [e.action, e.phase]),
    [
      ['promote', 'failed'],
      ['rollback', 'succeeded'],
    ],
  );
});
