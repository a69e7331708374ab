import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import test from 'node:test';
import { BlobStore, RegistryStore, type HistoryRecord, type ModelRecord } from '../../src/registry/index.js';
import { migrationsDir, tempDir } from './helpers.js';

const childScript = fileURLToPath(new URL('./crash-child.js', import.meta.url));
const ITERATIONS = 8;

/** Starts the child, waits until its store is open, lets it work for a random while, SIGKILLs it. */
async function runAndKill(dataDir: string): Promise<void> {
  const child = spawn(process.execPath, [childScript, dataDir, migrationsDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`crash child exited early (code ${code}): ${stderr}`)));
  });
  await delay(20 + Math.floor(Math.random() * 250));
  // The child must still be busy: exiting on its own would mean it hit an error.
  assert.equal(child.exitCode, null, `crash child stopped by itself: ${stderr}`);
  child.kill('SIGKILL');
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, 'SIGKILL', `child exit code ${code}: ${stderr}`);
}

/**
 * Replays a model's history from the start (empty pointers) and checks each entry against the state
 * the previous entries produced; the end state must equal the stored pointers.
 */
function replay(model: ModelRecord, newestFirst: HistoryRecord[]): void {
  let active: number | null = null;
  let rollback: number | null = null;
  for (const h of [...newestFirst].reverse()) {
    const where = `${model.name} history #${h.id} (${h.action} ${h.fromVersion} → ${h.toVersion})`;
    if (h.action === 'promote') {
      assert.equal(h.fromVersion, active, where);
      assert.notEqual(h.toVersion, active, `${where}: a no-op promote was recorded`);
      rollback = active ?? rollback;
      active = h.toVersion;
    } else if (h.action === 'rollback') {
      assert.equal(h.fromVersion, active, where);
      assert.equal(h.toVersion, rollback, where);
      [active, rollback] = [rollback, active];
    } else {
      assert.notEqual(h.fromVersion, active, `${where}: deleted the active version`);
      assert.notEqual(h.fromVersion, rollback, `${where}: deleted the rollback target`);
    }
  }
  assert.deepEqual(
    [model.activeVersion, model.rollbackVersion],
    [active, rollback],
    `${model.name} pointers vs history`,
  );
}

test('SIGKILL at random points never leaves a broken registry', async (t) => {
  const dataDir = tempDir(t, 'sightline-crash-');
  const lastNext = new Map<string, number>();
  let totalVersions = 0;
  for (let i = 0; i < ITERATIONS; i++) {
    await runAndKill(dataDir);

    const blobs = new BlobStore(dataDir);
    await blobs.sweepTemp();
    assert.deepEqual(readdirSync(join(dataDir, 'tmp')), [], 'tmp/ is empty after sweepTemp');

    const store = RegistryStore.open(dataDir, migrationsDir);
    try {
      assert.deepEqual(store.integrityCheck(), [], `iteration ${i}: integrity_check`);
      for (const v of store.allVersions()) {
        assert.equal(v.state, 'ok');
        assert.deepEqual(
          await blobs.check(v.sha256, v.sizeBytes),
          { ok: true },
          `iteration ${i}: blob of ${v.model} v${v.version}`,
        );
      }
      for (const m of store.listModels()) {
        const versions = store.listVersions(m.name).map((v) => v.version);
        for (const p of [m.activeVersion, m.rollbackVersion])
          if (p !== null) assert.ok(versions.includes(p), `${m.name}: pointer v${p} exists`);
        assert.ok(
          versions.every((v) => v < m.nextVersion),
          `${m.name}: numbers below nextVersion`,
        );
        assert.ok(m.nextVersion >= (lastNext.get(m.name) ?? 1), `${m.name}: nextVersion never goes back`);
        lastNext.set(m.name, m.nextVersion);
        replay(m, store.history(m.name, 10_000));
      }
      totalVersions = [...lastNext.values()].reduce((a, n) => a + n - 1, 0);
    } finally {
      store.close();
    }
  }
  assert.ok(totalVersions >= ITERATIONS, `the child did some work (${totalVersions} versions created)`);
});
