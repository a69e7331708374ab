/**
 * Canaries in role all, started with the CLI as an operator does: a much slower candidate (yolov8n_int8
 * as a new version of a model whose active version is yolox_nano) canaried under a p99 margin is rolled
 * back by the registry itself, with the reason in the audit log, while no live call fails; a client's
 * retries (its x-request-id) land on the same version; `promote` finishes a canary.
 */
import { Metadata } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect } from '../../src/cli/client.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient } from '../support/registry.js';
import { startTestServer } from '../support/server.js';
import { cocoLabelsFile, imagePath, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';
import { scrape, total } from '../observability/support.js';

const haveData = sharedDataOrSkip('canary');

describe('canary in role all', { skip: !haveData }, () => {
  test('a slower candidate is rolled back automatically with the reason audited, no live call failing; promote finishes a canary', async () => {
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolox_nano.onnx'), labels: cocoLabelsFile }],
      pool: { workers: 2, warmupRuns: 1, latencyThreads: 0 },
      fleet: { replicaName: 'solo', reportIntervalMs: 200 },
    });
    const cli = (...args: string[]) => runCli([...args, '--server', srv.address]);
    const reg = registryClient(srv.address);
    const bus = readFileSync(imagePath('bus.jpg'));
    const ask = (id: string) => {
      const md = new Metadata();
      md.set('x-request-id', id);
      return detect(srv.client, { image: bus }, { deadlineMs: 30_000, metadata: md });
    };
    try {
      assert.match(
        (await cli('registry', 'upload', modelPath('yolov8n_int8.onnx'), '--model', 'det')).stdout,
        /uploaded det version 2/,
      );
      const started = await cli(
        'registry',
        'promote',
        'det',
        '2',
        '--canary',
        '50%',
        '--canary-min-samples',
        '30',
        '--canary-p99-margin',
        '0.5',
        '--reason',
        'retrained',
      );
      assert.equal(started.code, 0, started.stderr);
      assert.match(
        started.stdout,
        /\ncanary \d+ of det version 2 on 50 % of requests against version 1, started .*\n {2}canary: {3}0 requests/,
      );
      assert.equal(
        (await call(reg, reg.getModelStatus, { model: 'det' })).activeVersion,
        1,
        'a canary moves no pointer',
      );
      await waitFor(
        async () =>
          (await call(reg, reg.getModelStatus, { model: 'det' })).replicas[0]?.versions.some((v) => v.version === 2),
        60_000,
        'the candidate loaded',
      );

      // A client's retries keep their request id, and so their version.
      const retried = await Promise.all([1, 2, 3].map(() => ask('retry-me')));
      assert.equal(
        new Set(retried.map((r) => r.version)).size,
        1,
        `retries answered by ${retried.map((r) => r.version)}`,
      );

      // Traffic until the registry rolls the canary back by itself.
      // Every answer of the canary's requests, the retries above included (the registry counts those too).
      const seen = {
        ok: 3,
        failed: [] as string[],
        versions: new Map([[retried[0]!.version, 3]]),
        after: new Set<string>(),
      };
      let i = 0;
      let rolledBack = false;
      const deadline = Date.now() + 180_000;
      while (!rolledBack && Date.now() < deadline) {
        await ask(`req-${i++}`).then(
          (r) => (seen.ok++, seen.versions.set(r.version, (seen.versions.get(r.version) ?? 0) + 1)),
          (e: Error) => seen.failed.push(e.message),
        );
        if (i % 10 === 0) rolledBack = !(await call(reg, reg.getModelStatus, { model: 'det' })).canary;
      }
      assert.ok(rolledBack, `the canary was rolled back within the deadline (${JSON.stringify([...seen.versions])})`);
      for (let k = 0; k < 10; k++) {
        await ask(`after-${k}`).then(
          (r) => seen.after.add(r.version),
          (e: Error) => seen.failed.push(e.message),
        );
      }
      console.log(
        `# ${seen.ok} calls during the canary: ${[...seen.versions].map(([v, n]) => `${n} by version ${v}`).join(', ')}; ${seen.failed.length} failed`,
      );
      assert.deepEqual(seen.failed, [], 'no live call failed');
      assert.ok(
        (seen.versions.get('1') ?? 0) >= 30 && (seen.versions.get('2') ?? 0) >= 30,
        'both arms served, each answer naming its version',
      );
      assert.deepEqual([...seen.after], ['1'], 'after the rollback the active version serves everything');

      const audit = await runCli(['audit', '--data-dir', srv.dataDir, '--json']);
      const entries = audit.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; target: string; outcome: string; reason: string });
      const canary = entries.filter((e) => e.action === 'canary' && e.target === 'det@2');
      assert.equal(canary[0]?.outcome, 'ok');
      assert.match(
        canary[0]!.reason,
        new RegExp(
          /^started: 50 % of requests against version 1, rolled back when its p99 exceeds 1.50 × /.source +
            /or its error rate the baseline's \+ 1 % over 30 requests per arm; retrained/.source,
        ),
      );
      assert.equal(canary[1]?.outcome, 'error');
      assert.match(
        canary[1]!.reason,
        new RegExp(
          /^rolled_back: rolled back automatically: canary p99 \d+ ms is above 1.50 × the baseline's p99 \d+ ms /
            .source +
            /\(canary.p99Margin 0.5\), over \d+ canary and \d+ baseline requests; canary \d+ requests, 0 errors/.source,
        ),
      );
      console.log(`# audit: ${canary[1]!.reason}`);
      assert.equal(
        total((await scrape(srv.app.admin!.port)).exposition, 'sightline_canaries_total', {
          sightline_model: 'det',
          sightline_canary_outcome: 'rolled_back',
        }),
        1,
      );
      await waitFor(
        async () =>
          (await call(reg, reg.getModelStatus, { model: 'det' })).replicas[0]?.versions.map((v) => v.version).join() ===
          '1',
        30_000,
        'the canary version unloaded',
      );

      // A canary finished by promote: version 2 becomes active, the canary ends as promoted.
      assert.equal(
        (await cli('registry', 'promote', 'det', '2', '--canary', '10', '--canary-p99-margin', '100')).code,
        0,
      );
      assert.ok((await call(reg, reg.getModelStatus, { model: 'det' })).canary, 'a canary runs');
      const done = await cli('registry', 'promote', 'det', '2', '--reason', 'canary looked fine');
      assert.equal(done.code, 0, done.stderr);
      const st = await call(reg, reg.getModelStatus, { model: 'det' });
      assert.deepEqual([st.activeVersion, st.canary], [2, undefined]);
      assert.equal((await ask('after-promote')).version, '2');
      const last = (await runCli(['audit', '--data-dir', srv.dataDir, '--json'])).stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { action: string; outcome: string; reason: string });
      assert.ok(
        last.some(
          (e) => e.action === 'canary' && e.outcome === 'ok' && /^promoted: version 2 was promoted by /.test(e.reason),
        ),
      );
    } finally {
      reg.close();
      await srv.close();
    }
  });
});
