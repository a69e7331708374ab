import assert from 'node:assert/strict';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { SightlineError } from '../../src/errors.js';
import {
  AuditLog,
  GENESIS_HASH,
  RegistryStore,
  auditEntryHash,
  parseSince,
  verifyAuditChain,
  type AuditEntry,
} from '../../src/registry/index.js';
import { migrationsDir, tempDir } from './helpers.js';

/** A log of `n` entries one minute apart from 2025-01-01T00:00Z, and a raw second connection to tamper with. */
function withLog(
  t: TestContext,
  n: number,
): { audit: AuditLog; raw: Database.Database; dir: string; store: RegistryStore } {
  const dir = tempDir(t);
  let tick = Date.parse('2025-01-01T00:00:00.000Z');
  const store = RegistryStore.open(dir, migrationsDir, {});
  t.after(() => store.close());
  const audit = new AuditLog(store.database, { now: () => new Date((tick += 60_000)) });
  for (let i = 1; i <= n; i++) {
    audit.append({
      principal: i % 2 ? 'alice' : 'anonymous',
      peer: `ipv4:10.0.0.${i}:1000`,
      action: i % 2 ? 'promote' : 'Detect',
      target: `yolo v${i}`,
      outcome: i % 2 ? 'ok' : 'denied',
      reason: `#${i}`,
    });
  }
  const raw = new Database(join(dir, 'registry.db'));
  t.after(() => raw.close());
  return { audit, raw, dir, store };
}

test('append chains entries; verify walks the chain', (t) => {
  const { audit } = withLog(t, 5);
  const all = audit.list();
  assert.deepEqual(
    all.map((e) => e.seq),
    [1, 2, 3, 4, 5],
  );
  assert.equal(all[0].prevHash, GENESIS_HASH);
  for (let i = 1; i < all.length; i++) assert.equal(all[i].prevHash, all[i - 1].hash);
  for (const e of all) assert.equal(auditEntryHash(e), e.hash);
  assert.deepEqual(all[1], {
    seq: 2,
    at: '2025-01-01T00:02:00.000Z',
    principal: 'anonymous',
    peer: 'ipv4:10.0.0.2:1000',
    action: 'Detect',
    target: 'yolo v2',
    outcome: 'denied',
    reason: '#2',
    prevHash: all[0].hash,
    hash: all[1].hash,
  });
  assert.deepEqual(audit.verify(), { ok: true, checked: 5, head: { seq: 5, hash: all[4].hash }, triggersIntact: true });
  assert.deepEqual(audit.head(), { seq: 5, hash: all[4].hash });
});

test('the triggers refuse UPDATE and DELETE', (t) => {
  const { store } = withLog(t, 2);
  assert.throws(() => store.database.prepare("UPDATE audit SET reason = 'x'").run(), /append-only/);
  assert.throws(() => store.database.prepare('DELETE FROM audit').run(), /append-only/);
});

test('an edited row is caught at its seq', (t) => {
  const { audit, raw } = withLog(t, 5);
  raw.exec('DROP TRIGGER audit_no_update');
  raw.prepare("UPDATE audit SET outcome = 'ok', reason = 'nothing to see' WHERE seq = 3").run();
  const r = audit.verify();
  assert.equal(r.ok, false);
  assert.equal(r.firstBadSeq, 3);
  assert.match(r.problem ?? '', /entry 3 was altered/);
  assert.equal(r.checked, 2);
  assert.equal(r.triggersIntact, false);
});

test('an edited row with its own hash recomputed breaks the link to the next one', (t) => {
  const { audit, raw } = withLog(t, 5);
  raw.exec('DROP TRIGGER audit_no_update');
  const row = audit.list().find((e) => e.seq === 2)!;
  const forged = { ...row, principal: 'mallory' };
  raw.prepare('UPDATE audit SET principal = ?, hash = ? WHERE seq = 2').run(forged.principal, auditEntryHash(forged));
  const r = audit.verify();
  assert.equal(r.firstBadSeq, 3);
  assert.match(r.problem ?? '', /does not follow entry 2/);
});

test('a deleted row is caught: in the middle, first, or at the end', (t) => {
  const { audit, raw } = withLog(t, 5);
  raw.exec('DROP TRIGGER audit_no_delete');
  raw.prepare('DELETE FROM audit WHERE seq = 2').run();
  assert.deepEqual([audit.verify().firstBadSeq, audit.verify().problem], [2, 'entry 2 is missing (deleted)']);

  const b = withLog(t, 5);
  b.raw.exec('DROP TRIGGER audit_no_delete');
  b.raw.prepare('DELETE FROM audit WHERE seq = 1').run();
  assert.equal(b.audit.verify().firstBadSeq, 1);

  const c = withLog(t, 5);
  const head = c.audit.head()!;
  c.raw.exec('DROP TRIGGER audit_no_delete');
  c.raw.prepare('DELETE FROM audit WHERE seq >= 4').run();
  const r = c.audit.verify();
  assert.equal(r.ok, false);
  assert.equal(r.firstBadSeq, 4);
  assert.match(r.problem ?? '', /after 3 \(up to 5\) were deleted/);
  // Even with the high-water mark reset too, a recorded head catches the truncation.
  c.raw.prepare("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit'").run();
  assert.equal(c.audit.verify().ok, true);
  const r2 = c.audit.verify({ expectHead: head });
  assert.equal(r2.ok, false);
  assert.match(r2.problem ?? '', /cut short/);
});

test('a reordered row is caught', (t) => {
  const { audit, raw } = withLog(t, 5);
  raw.exec('DROP TRIGGER audit_no_update');
  // Swap entries 2 and 3 by renumbering them.
  raw.transaction(() => {
    raw.prepare('UPDATE audit SET seq = 100 WHERE seq = 2').run();
    raw.prepare('UPDATE audit SET seq = 2 WHERE seq = 3').run();
    raw.prepare('UPDATE audit SET seq = 3 WHERE seq = 100').run();
  })();
  const r = audit.verify();
  assert.equal(r.ok, false);
  assert.equal(r.firstBadSeq, 2);
  assert.match(r.problem ?? '', /does not follow entry 1/);
});

test('a rewritten chain verifies on its own but not against a recorded head', (t) => {
  const { audit, raw } = withLog(t, 3);
  const head = audit.verify().head!;
  raw.exec('DROP TRIGGER audit_no_update');
  // Recompute every hash after an edit: only an outside anchor can tell.
  let prev = GENESIS_HASH;
  for (const e of audit.list()) {
    const forged = { ...e, reason: e.seq === 1 ? 'forged' : e.reason, prevHash: prev };
    const hash = auditEntryHash(forged);
    raw
      .prepare('UPDATE audit SET reason = ?, prev_hash = ?, hash = ? WHERE seq = ?')
      .run(forged.reason, prev, hash, e.seq);
    prev = hash;
  }
  assert.equal(audit.verify().ok, true);
  const r = audit.verify({ expectHead: head });
  assert.deepEqual([r.ok, r.firstBadSeq], [false, 3]);
  assert.match(r.problem ?? '', /rewritten/);
});

test('two connections appending in turn extend one chain', (t) => {
  const { audit, dir } = withLog(t, 1);
  const other = RegistryStore.open(dir, migrationsDir);
  t.after(() => other.close());
  const second = new AuditLog(other.database);
  for (let i = 0; i < 10; i++) (i % 2 ? audit : second).append({ principal: 'p', action: 'upload', outcome: 'ok' });
  assert.deepEqual(second.verify().checked, 11);
});

test('an entry appended inside a transaction that fails is rolled back with it', (t) => {
  const { audit, store } = withLog(t, 1);
  assert.throws(() =>
    store.database.transaction(() => {
      audit.append({ principal: 'p', action: 'delete', outcome: 'ok' });
      throw new Error('the change failed');
    })(),
  );
  assert.equal(audit.list().length, 1);
  assert.equal(audit.verify().ok, true);
});

test('list filters by time and keeps the newest `limit`; append validates and clips', (t) => {
  const { audit } = withLog(t, 6);
  assert.deepEqual(
    audit.list({ since: '2025-01-01T00:04:00Z' }).map((e) => e.seq),
    [4, 5, 6],
  );
  assert.deepEqual(
    audit.list({ limit: 2 }).map((e) => e.seq),
    [5, 6],
  );
  assert.deepEqual(
    audit.list({ afterSeq: 4 }).map((e) => e.seq),
    [5, 6],
  );
  assert.throws(
    () => audit.list({ limit: 0 }),
    (e: unknown) => e instanceof SightlineError && e.code === 'INVALID_INPUT',
  );
  assert.throws(() => audit.append({ principal: '', action: 'x', outcome: 'ok' }), /principal/);
  assert.throws(() => audit.append({ principal: 'p', action: 'x', outcome: 'fine' as 'ok' }), /outcome/);
  const long = audit.append({ principal: 'p', action: 'x', outcome: 'error', reason: 'r'.repeat(10_000) });
  assert.equal(long.reason.length, 4096);
  assert.equal(audit.verify().ok, true);
});

test('parseSince takes a date/time or a duration back from now', () => {
  const now = new Date('2025-01-10T12:00:00.000Z');
  assert.equal(parseSince('2025-01-01', now), '2025-01-01T00:00:00.000Z');
  assert.equal(parseSince('15m', now), '2025-01-10T11:45:00.000Z');
  assert.equal(parseSince('24h', now), '2025-01-09T12:00:00.000Z');
  assert.equal(parseSince('7d', now), '2025-01-03T12:00:00.000Z');
  assert.throws(() => parseSince('yesterday', now), /neither a date/);
});

test('JSON-lines export reads back and verifies, whole or from --since', (t) => {
  const { audit } = withLog(t, 5);
  const text = [...audit.exportJsonLines()].join('');
  const lines = text.trimEnd().split('\n');
  assert.equal(lines.length, 5);
  assert.ok(text.endsWith('\n'));
  const entries = lines.map((l) => JSON.parse(l) as AuditEntry);
  assert.deepEqual(entries, audit.list());
  assert.equal(verifyAuditChain(entries).ok, true);
  const tail = [...audit.exportJsonLines('2025-01-01T00:03:00Z')].map((l) => JSON.parse(l) as AuditEntry);
  assert.deepEqual(
    tail.map((e) => e.seq),
    [3, 4, 5],
  );
  assert.equal(verifyAuditChain(tail).ok, false, 'a partial export does not start at the genesis');
  assert.equal(verifyAuditChain(tail, { fromStart: false }).ok, true);
  const edited = entries.map((e) => (e.seq === 4 ? { ...e, target: 'other' } : e));
  assert.equal(verifyAuditChain(edited).firstBadSeq, 4);
});
