/** The data directory's server lock: one holder at a time, gone with its process however it ends. */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SightlineError } from '../../src/errors.js';
import { lockDataDir, OWNER_FILE, RegistryStore } from '../../src/registry/index.js';
import { migrationsDir, tempDir } from './helpers.js';

const registryModule = new URL('../../src/registry/index.js', import.meta.url).href;

/** A separate process that takes the lock, says "locked" and waits to be killed. */
async function holder(dataDir: string): Promise<{ child: ChildProcess; exit: Promise<unknown> }> {
  const code =
    `import { lockDataDir } from ${JSON.stringify(registryModule)}; ` +
    `lockDataDir(${JSON.stringify(dataDir)}); console.log('locked'); setInterval(() => {}, ` +
    `1e9);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = new Promise((r) => child.on('exit', r));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('locked') && resolve());
    void exit.then(() => reject(new Error('the holder exited before taking the lock')));
  });
  return { child, exit };
}

const refused = (dataDir: string): SightlineError => {
  try {
    lockDataDir(dataDir).release();
  } catch (e) {
    assert.ok(e instanceof SightlineError);
    return e;
  }
  assert.fail('the lock was taken twice');
};

test('a second holder is refused with the holder named; a SIGKILLed holder leaves no stale lock', async (t) => {
  const dir = tempDir(t);
  const { child, exit } = await holder(dir);
  t.after(() => child.kill('SIGKILL'));
  const e = refused(dir);
  assert.equal(e.code, 'PRECONDITION');
  assert.match(e.message, new RegExp(`in use by another Sightline server \\(pid ${child.pid}, started \\d{4}-`));
  assert.match(e.message, /--data-dir, registry\.dataDir/);
  child.kill('SIGKILL');
  await exit;
  const lock = lockDataDir(dir);
  assert.equal(lock.owner.pid, process.pid);
  lock.release();
});

test('in one process too: a locked store refuses a second server until it closes; admin opens are not refused', (t) => {
  const dir = tempDir(t);
  const server = RegistryStore.open(dir, migrationsDir, { lock: true });
  assert.throws(
    () => RegistryStore.open(dir, migrationsDir, { lock: true }),
    /in use by another Sightline server \(pid \d+, started/,
  );
  const admin = RegistryStore.open(dir, migrationsDir);
  admin.close();
  server.close();
  RegistryStore.open(dir, migrationsDir, { lock: true }).close();
});

test("an owner file naming a live pid does not block (a restarted container's new pid 1 is the old one's)", (t) => {
  const dir = tempDir(t);
  writeFileSync(
    join(dir, OWNER_FILE),
    JSON.stringify({ pid: process.pid, host: 'old-pod', startedAt: '2020-01-01T00:00:00.000Z' }),
  );
  const lock = lockDataDir(dir);
  lock.release();
  lock.release(); // idempotent
});
