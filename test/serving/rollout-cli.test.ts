/**
 * `sightline registry rollback --wait` and a `--wait` that times out, as an operator runs them: the
 * built CLI as a child process against a registry server and two inference replicas on loopback (real
 * models, real gRPC). replica-a reaches the registry through test/support/registry-front.ts, the
 * production Registry handlers on a port whose FetchBlob the test can stall, so one replica can be
 * kept loading for as long as the test needs.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { registryFront, type RegistryFront } from '../support/registry-front.js';
import { call, registryClient, uploadBytes, uploadFile } from '../support/registry.js';
import { startDetRegistry, startReplica, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('rollout CLI');
const bus = readFileSync(imagePath('bus.jpg'));

describe('rollouts followed from the CLI', { skip: !haveData }, () => {
  let registry: TestServer;
  let front: RegistryFront;
  const replicas: TestServer[] = [];
  let reg: ReturnType<typeof registryClient>;
  const cli = (...args: string[]) => runCli([...args, '--server', registry.address]);
  /** Each replica and the version it serves, as the registry's fleet view has them. */
  const fleet = async () =>
    (await call(reg, reg.getModelStatus, { model: 'det' })).replicas
      .map((r) => `${r.replica}:${r.servingVersion}`)
      .join(',');
  const served = (i: number) => replicas[i]!.detect({ image: bus }, { deadlineMs: 20_000 }).then((r) => r.version);

  before(async () => {
    registry = await startDetRegistry();
    reg = registryClient(registry.address);
    front = await registryFront(registry.app.registry!);
    // A stalled download stays `loading` for the whole test.
    const replica = async (name: string, address: string) =>
      replicas.push(await startReplica(name, address, { registry: { fetchIdleTimeoutMs: 120_000 } }));
    await replica('replica-a', front.address);
    await replica('replica-b', registry.address);
    await waitFor(async () => (await fleet()) === 'replica-a:1,replica-b:1', 30_000, 'both replicas serving version 1');
  });
  after(async () => {
    reg?.close();
    for (const r of replicas) await r.close();
    await front?.stop({ abrupt: true });
    await registry?.close();
  });

  test('registry rollback --wait follows the rollback until every replica serves the rollback target, and exits 0', async () => {
    const v2 = await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
    const up = await cli('registry', 'promote', 'det', String(v2.version), '--wait', '60s');
    assert.equal(up.code, 0, up.stderr);
    assert.deepEqual([await served(0), await served(1)], ['2', '2']);

    const back = await cli('registry', 'rollback', 'det', '--wait', '60s', '--reason', 'bad release');
    assert.equal(back.code, 0, back.stderr);
    assert.equal(back.stderr, '');
    assert.match(
      back.stdout,
      /(^|\n)rollout \d+ \(rollback of det to version 1 by [^)]+\): succeeded: 2\/2 replica\(s\) serve version 1 after \d+\.\d s\n$/,
    );
    assert.deepEqual([await served(0), await served(1)], ['1', '1'], 'both replicas answer with version 1 again');
    assert.equal(await fleet(), 'replica-a:1,replica-b:1');
  });

  test('--wait that times out exits 1 naming the replica not ready and where it stands', async () => {
    // A distinct copy of version 1's file (an unknown protobuf field appended), whose download replica-a never finishes.
    const bytes = Buffer.concat([readFileSync(modelPath('yolo11n_int8_320.onnx')), Buffer.from([0xc0, 0x3e, 3])]);
    const v3 = await uploadBytes(reg, bytes, { model: 'det' });
    front.hold(v3.sha256, { sendBytes: 64 * 1024 });
    const pending = cli('registry', 'promote', 'det', String(v3.version), '--wait', '8s');
    // Before the deadline, replica-b serves version 3 and replica-a is still loading it: the fleet is mixed.
    await waitFor(async () => (await fleet()) === `replica-a:1,replica-b:${v3.version}`, 7_000, 'replica-b serving v3');
    const out = await pending;
    assert.equal(out.code, 1, `a rollout that timed out exits 1: ${out.stdout}`);
    assert.match(
      out.stderr,
      new RegExp(
        `^sightline: rollout \\d+ \\(promote of det to version ${v3.version} by [^)]+\\): failed: timed out after 8\\.0 s: ` +
          `1/2 replica\\(s\\) serve version ${v3.version}; waiting for replica-a \\(loading\\)\\n$`,
      ),
    );
    assert.match(
      out.stdout,
      new RegExp(`det version ${v3.version}: 1/2 replica\\(s\\) ready \\(replica-a loading\\)\\n`),
    );
    assert.equal(await served(0), '1', 'replica-a keeps serving version 1');
    assert.equal(front.held.get(v3.sha256), 1, 'its one download of version 3 is the stalled one');
  });
});
