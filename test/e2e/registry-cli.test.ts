/** `sightline registry ...` against a running server: every subcommand, with --json for scripts. */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess } from '../support/process.js';
import { startTestServer, tempDataDir } from '../support/server.js';
import { modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('registry-cli');

describe('sightline registry CLI', { skip: !haveData }, () => {
  test('upload, list, versions, show, status, promote, rollback, history, delete', async () => {
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 1, warmupRuns: 0 },
    });
    const cli = async (...args: string[]) => {
      const r = await runCli(['registry', ...args, '--server', srv.address]);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const json = async <T>(...args: string[]) => JSON.parse(await cli(...args, '--json')) as T;
    try {
      assert.match(
        await cli(
          'upload',
          modelPath('yolox_nano.onnx'),
          '--model',
          'det',
          '--notes',
          'YOLOX nano, COCO',
          '--labels',
          modelPath('../datasets/coco128/classes.txt'),
        ),
        /uploaded det version 2/,
      );
      assert.deepEqual(
        (await json<{ name: string; versionCount: number }[]>('list')).map((m) => [m.name, m.versionCount]),
        [['det', 2]],
      );
      const versions = await json<{ version: number; family: string }[]>('versions', 'det');
      assert.deepEqual(
        versions.map((v) => [v.version, v.family]),
        [
          [1, 'ultralytics'],
          [2, 'yolox'],
        ],
      );
      assert.match(await cli('show', 'det', '2'), /notes: YOLOX nano, COCO/);
      type Status = {
        activeVersion: number;
        rollbackVersion: number;
        replicas: { servingVersion: number; versions: { version: number; state: string }[] }[];
      };
      const st = await json<Status>('promote', 'det', '2', '--reason', 'cli test');
      assert.deepEqual([st.activeVersion, st.rollbackVersion], [2, 1]);
      // JSON names states (not enum numbers): this one process is the fleet, serving 2 with 1 warm.
      const states = (s: Status) =>
        s.replicas.map((r) => [r.servingVersion, r.versions.map((v) => `${v.version} ${v.state}`)]);
      assert.deepEqual(states(st), [[2, ['1 ready', '2 serving']]]);
      assert.deepEqual(states(await json<Status>('status', 'det')), [[2, ['1 ready', '2 serving']]]);
      assert.match(
        await cli('status', 'det'),
        /model det: active 2, rollback 1; 1 replica\(s\)\n {2}\S+: serving 2; versions: 1 ready on cpu; 2 serving on cpu\n/,
      );
      assert.equal((await json<{ activeVersion: number }>('rollback', 'det')).activeVersion, 1);
      const history = await json<{ action: string; reason: string }[]>('history', 'det');
      assert.deepEqual(
        history.map((h) => h.action),
        ['rollback', 'promote', 'promote'],
      );
      assert.equal(history[1]!.reason, 'cli test');
      // Version 2 is the rollback target now: refused with the reason and exit status 1.
      const refused = await runCli(['registry', 'delete', 'det', '2', '--server', srv.address]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /FAILED_PRECONDITION: .*rollback/);
      assert.match(
        await cli('upload', modelPath('yolox_nano.onnx'), '--model', 'det'),
        /already registered: det version 2/,
      );
    } finally {
      await srv.close();
    }
  });

  test('serve --model in role all: the audit log has its upload and promote by "sightline serve", printed without a peer', async () => {
    const dir = tempDataDir();
    const server = await serveProcess([
      '--data-dir',
      dir,
      '--model',
      modelPath('yolo11n_int8_320.onnx'),
      '--name',
      'det',
      '--workers',
      '1',
    ]);
    try {
      assert.equal(server.logs.find((l) => l.event === 'serving')?.event, 'serving');
      // The audit tools read the database beside the running server.
      const json = await runCli(['audit', '--data-dir', dir, '--json']);
      assert.equal(json.code, 0, json.stderr);
      const entries = json.stdout
        .trim()
        .split('\n')
        .map(
          (l) => JSON.parse(l) as { principal: string; peer: string; action: string; target: string; outcome: string },
        );
      const serve = entries.filter((e) => e.principal === 'sightline serve');
      // Sorted: the rollout of the promote may be audited before or after the promote itself.
      assert.deepEqual(serve.map((e) => `${e.action} ${e.target} ${e.outcome} peer=${e.peer}`).sort(), [
        'promote det@1 ok peer=',
        'rollout det@1 ok peer=',
        'upload det ok peer=',
      ]);
      const plain = await runCli(['audit', '--data-dir', dir]);
      assert.equal(plain.code, 0, plain.stderr);
      assert.match(plain.stdout, /\bupload +det +by sightline serve\n/);
      assert.match(plain.stdout, /\bpromote +det@1 +by sightline serve\n/);
      assert.doesNotMatch(plain.stdout, / from (\n|:|$)/m, 'no " from " without a peer');
    } finally {
      await server.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
