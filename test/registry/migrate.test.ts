import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'node:test';
import Database from 'better-sqlite3';
import { SightlineError } from '../../src/errors.js';
import { RegistryStore, defaultMigrationsDir, migrate, readMigrations } from '../../src/registry/index.js';
import { migrationsDir, newVersion, tempDir } from './helpers.js';

const fileCount = readMigrations(migrationsDir).length;

test('defaultMigrationsDir resolves to <repo>/migrations from the compiled code', () => {
  assert.equal(defaultMigrationsDir(), migrationsDir);
  assert.ok(readMigrations(defaultMigrationsDir()).some((m) => m.name === '0001_init.sql'));
});

test('a new database gets every migration once, WAL, synchronous=FULL, foreign keys and a busy timeout', (t) => {
  const dir = tempDir(t);
  const db = new Database(join(dir, 'registry.db'));
  t.after(() => db.close());
  assert.deepEqual(migrate(db, migrationsDir), { from: 0, to: fileCount });
  assert.equal(db.pragma('user_version', { simple: true }), fileCount);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('synchronous', { simple: true }), 2); // FULL
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  assert.ok((db.pragma('busy_timeout', { simple: true }) as number) > 0);
  const tables = db
    .prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((r) => r.name);
  for (const name of ['models', 'pointer_history', 'profiles', 'versions']) assert.ok(tables.includes(name), name);
  // Second run on the same connection: nothing to apply.
  assert.deepEqual(migrate(db, migrationsDir), { from: fileCount, to: fileCount });
});

test('re-opening a store is idempotent and keeps its data', (t) => {
  const dir = tempDir(t);
  const a = RegistryStore.open(dir, migrationsDir);
  a.insertVersion(newVersion('yolo', 'v1'));
  a.close();
  const b = RegistryStore.open(dir, migrationsDir);
  t.after(() => b.close());
  assert.equal(b.getModel('yolo')?.versionCount, 1);
  assert.deepEqual(b.integrityCheck(), []);
  const raw = new Database(join(dir, 'registry.db'), { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.pragma('user_version', { simple: true }), fileCount);
  assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
});

test('a database from a newer build is refused and left untouched', (t) => {
  const dir = tempDir(t);
  const raw = new Database(join(dir, 'registry.db'));
  raw.pragma(`user_version = ${fileCount + 1}`);
  raw.close();
  assert.throws(
    () => RegistryStore.open(dir, migrationsDir),
    (e: unknown) =>
      e instanceof SightlineError &&
      e.code === 'PRECONDITION' &&
      e.message ===
        `registry schema v${fileCount + 1} is newer than this build (v${fileCount}); upgrade sightline or use the matching database`,
  );
  const after = new Database(join(dir, 'registry.db'), { readonly: true });
  t.after(() => after.close());
  assert.equal(after.pragma('user_version', { simple: true }), fileCount + 1);
  assert.equal(after.pragma('journal_mode', { simple: true }), 'delete'); // WAL was not switched on
});

test('missing migrations apply in one transaction: a failing file rolls back all of them', (t) => {
  const dir = tempDir(t);
  const migs = join(dir, 'migrations');
  mkdirSync(migs);
  copyFileSync(join(migrationsDir, '0001_init.sql'), join(migs, '0001_init.sql'));
  writeFileSync(join(migs, '0002_bad.sql'), 'CREATE TABLE extra (x INTEGER);\nINSERT INTO no_such_table VALUES (1);\n');
  const db = new Database(join(dir, 'registry.db'));
  t.after(() => db.close());
  assert.throws(() => migrate(db, migs), /no such table/);
  assert.equal(db.pragma('user_version', { simple: true }), 0);
  assert.equal(db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").pluck().get(), 0);
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys are back on after a failed migration');

  writeFileSync(join(migs, '0002_bad.sql'), 'CREATE TABLE extra (x INTEGER);\n');
  assert.deepEqual(migrate(db, migs), { from: 0, to: 2 });
  writeFileSync(join(migs, '0003_more.sql'), 'ALTER TABLE extra ADD COLUMN y INTEGER;\n');
  assert.deepEqual(migrate(db, migs), { from: 2, to: 3 });
});

test('0004 keeps the tallies of a v3 database, as the one tally of each replica (incarnation "")', (t) => {
  const dir = tempDir(t);
  const migs = join(dir, 'migrations');
  mkdirSync(migs);
  for (const f of readMigrations(migrationsDir).slice(0, 3))
    copyFileSync(join(migrationsDir, f.name), join(migs, f.name));
  const db = new Database(join(dir, 'registry.db'));
  t.after(() => db.close());
  assert.deepEqual(migrate(db, migs), { from: 0, to: 3 });
  const at = '2025-01-01T00:00:00.000Z';
  db.prepare("INSERT INTO models (name, created_at) VALUES ('det', ?)").run(at);
  db.prepare(
    "INSERT INTO trials (model, kind, version, baseline_version, share, settings, started_at, started_by) VALUES ('det', 'shadow', 2, 1, 1, '{}', ?, 'ops')",
  ).run(at);
  db.prepare(
    "INSERT INTO trial_stats (trial_id, replica, updated_at, body) VALUES (1, 'replica-a', ?, '{\"samples\":60}')",
  ).run(at);
  assert.deepEqual(migrate(db, migrationsDir), { from: 3, to: fileCount });
  assert.deepEqual(db.prepare('SELECT trial_id, replica, incarnation, body FROM trial_stats').all(), [
    { trial_id: 1, replica: 'replica-a', incarnation: '', body: '{"samples":60}' },
  ]);
  // A restarted replica's process adds its own row beside it.
  db.prepare(
    "INSERT INTO trial_stats (trial_id, replica, incarnation, updated_at, body) VALUES (1, 'replica-a', 'b', ?, '{}')",
  ).run(at);
  assert.equal(db.prepare('SELECT count(*) FROM trial_stats').pluck().get(), 2);
});

test('a migration leaving foreign key violations is rolled back', (t) => {
  const dir = tempDir(t);
  const migs = join(dir, 'migrations');
  mkdirSync(migs);
  copyFileSync(join(migrationsDir, '0001_init.sql'), join(migs, '0001_init.sql'));
  writeFileSync(join(migs, '0002_orphan.sql'), "INSERT INTO profiles VALUES ('ghost', 1, 'k', 't', '{}');\n");
  const db = new Database(join(dir, 'registry.db'));
  t.after(() => db.close());
  assert.throws(
    () => migrate(db, migs),
    (e: unknown) => e instanceof SightlineError && e.code === 'INTERNAL' && /foreign key/.test(e.message),
  );
  assert.equal(db.pragma('user_version', { simple: true }), 0);
});

test('badly numbered migration files are an INTERNAL error', (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, '0001_a.sql'), 'SELECT 1;');
  writeFileSync(join(dir, '0003_c.sql'), 'SELECT 1;');
  assert.throws(
    () => readMigrations(dir),
    (e: unknown) => e instanceof SightlineError && e.code === 'INTERNAL' && /no gaps/.test(e.message),
  );
  writeFileSync(join(dir, '0002 b.sql'), 'SELECT 1;');
  assert.throws(() => readMigrations(dir), /NNNN_name\.sql/);
  assert.throws(
    () => readMigrations(join(dir, 'nope')),
    (e: unknown) => e instanceof SightlineError && e.code === 'INTERNAL',
  );
});

test('a file that is not a SQLite database is an INTERNAL error naming the file', (t) => {
  const dir = tempDir(t);
  writeFileSync(
    join(dir, 'registry.db'),
    'this is not a database, just some text that is long enough to have a header',
  );
  assert.throws(
    () => RegistryStore.open(dir, migrationsDir),
    (e: unknown) =>
      e instanceof SightlineError &&
      e.code === 'INTERNAL' &&
      e.message.startsWith(`cannot open the registry database ${join(dir, 'registry.db')}: `),
  );
});
