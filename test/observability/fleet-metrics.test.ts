/**
 * The registry's per-replica and rollout metrics, scraped from its real /metrics: a registry server
 * and an inference replica on loopback (real models, real gRPC), promotes through the Registry
 * service. The series follow the fleet view: a replica's versions and states as it reports them, and
 * none of its series once it leaves.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RolloutPhase } from '../../src/generated/sightline/v1/registry.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient, uploadFile } from '../support/registry.js';
import { startDetRegistry, startReplica, type TestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';
import { pick, scrape, total, type Exposition } from './support.js';

const haveData = sharedDataOrSkip('fleet metrics');
/** replica-a downloads files up to 3.6 MB: yolov8n_int8 (3.50 MB) fits, yolox_nano (3.71 MB) does not. */
const LIMIT = 3_600_000;

describe("the registry's fleet and rollout metrics", { skip: !haveData }, () => {
  let registry: TestServer;
  let replica: TestServer | null = null;
  let reg: ReturnType<typeof registryClient>;
  const metrics = async () => (await scrape(registry.app.admin!.port)).exposition;
  /** replica-a's versions as `version state`, sorted, from sightline_replica_versions. */
  const held = (e: Exposition) =>
    pick(e, 'sightline_replica_versions', { sightline_replica: 'replica-a', sightline_model: 'det' })
      .map((s) => `${s.labels.sightline_model_version} ${s.labels.sightline_model_version_state}=${s.value}`)
      .sort();
  const rollouts = (e: Exposition, outcome: string) =>
    total(e, 'sightline_rollouts_total', { sightline_model: 'det', sightline_rollout_outcome: outcome });
  const durations = (e: Exposition, outcome: string) =>
    total(e, 'sightline_rollout_duration_seconds_count', {
      sightline_model: 'det',
      sightline_rollout_outcome: outcome,
    });
  /** Promotes through the Registry service, then waits for the rollout's end in the registry's status. */
  const promote = async (version: number) => {
    const s = await call(reg, reg.promote, { model: 'det', version, reason: 'test' });
    await waitFor(
      async () => {
        const r = (await call(reg, reg.getModelStatus, { model: 'det' })).rollout;
        return r !== undefined && r.id === s.rollout?.id && r.phase !== RolloutPhase.ROLLOUT_PHASE_IN_PROGRESS;
      },
      30_000,
      `the rollout to version ${version} ended`,
    );
  };

  before(async () => {
    registry = await startDetRegistry();
    reg = registryClient(registry.address);
    replica = await startReplica('replica-a', registry.address, { registry: { maxUploadBytes: LIMIT } });
  });
  after(async () => {
    reg?.close();
    await replica?.close();
    await registry?.close();
  });

  test('sightline_fleet_replicas, sightline_replica_versions and sightline_replica_report_age_seconds follow the replica', async () => {
    const { value: e } = await waitFor(
      async () => {
        const m = await metrics();
        return held(m).join() === '1 serving=1' && m;
      },
      30_000,
      'replica-a serving version 1 in /metrics',
    );
    assert.deepEqual(
      pick(e, 'sightline_fleet_replicas').map((s) => s.value),
      [1],
    );
    const [age] = pick(e, 'sightline_replica_report_age_seconds', { sightline_replica: 'replica-a' });
    assert.ok(age && age.value >= 0 && age.value < 5, `report age ${age?.value} s, with reports every 0.2 s`);
  });

  test('a promote every replica follows counts a succeeded rollout; one the replica cannot load counts a failed one and shows the failed version', async () => {
    const before = await metrics();
    const v2 = await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
    await promote(v2.version);
    let e = await metrics();
    assert.equal(rollouts(e, 'succeeded') - rollouts(before, 'succeeded'), 1);
    assert.equal(durations(e, 'succeeded') - durations(before, 'succeeded'), 1, 'its duration observed once');
    assert.equal(rollouts(e, 'failed'), 0);
    await waitFor(async () => held(await metrics()).join() === '1 ready=1,2 serving=1', 5_000, 'v2 serving, v1 warm');

    const v3 = await uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'det' });
    await promote(v3.version);
    e = await metrics();
    assert.equal(rollouts(e, 'failed') - rollouts(before, 'failed'), 1);
    assert.equal(durations(e, 'failed') - durations(before, 'failed'), 1);
    const sum = total(e, 'sightline_rollout_duration_seconds_sum', {
      sightline_model: 'det',
      sightline_rollout_outcome: 'failed',
    });
    assert.ok(sum > 0 && sum < 30, `the failed rollout took ${sum} s`);
    // The replica keeps serving 2; 3 is failed.
    await waitFor(
      async () => {
        const h = held(await metrics());
        return h.includes('2 serving=1') && h.includes('3 failed=1') && h.every((x) => x.endsWith('=1'));
      },
      10_000,
      'v3 failed on replica-a, v2 still serving',
    );
  });

  test('a replica that leaves takes its series with it; the rollout counters stay', async () => {
    const before = await metrics();
    await replica!.close();
    replica = null;
    const { value: e } = await waitFor(
      async () => {
        const m = await metrics();
        return pick(m, 'sightline_fleet_replicas')[0]?.value === 0 && m;
      },
      10_000,
      'no replica in the fleet',
    );
    assert.deepEqual(pick(e, 'sightline_replica_versions'), [], 'no version series for a replica that left');
    assert.deepEqual(pick(e, 'sightline_replica_report_age_seconds'), []);
    assert.equal(rollouts(e, 'succeeded'), rollouts(before, 'succeeded'));
    assert.equal(rollouts(e, 'failed'), rollouts(before, 'failed'));
  });
});
