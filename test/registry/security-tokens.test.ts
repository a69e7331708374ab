import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { SightlineError } from '../../src/errors.js';
import {
  AuditLog,
  CAPABILITIES,
  TOKEN_ROLES,
  RegistryStore,
  TokenMirror,
  TokenStore,
  hashTokenSecret,
  roleAllows,
  type Capability,
  type TokenRole,
} from '../../src/registry/index.js';
import { migrationsDir, tempDir } from './helpers.js';

function open(
  t: TestContext,
  now?: () => Date,
): { store: RegistryStore; tokens: TokenStore; dir: string; hashed: string[] } {
  const dir = tempDir(t);
  const store = RegistryStore.open(dir, migrationsDir);
  t.after(() => store.close());
  const hashed: string[] = [];
  const tokens = new TokenStore(store.database, {
    now,
    hashSecret: (s) => {
      hashed.push(s);
      return hashTokenSecret(s);
    },
  });
  return { store, tokens, dir, hashed };
}

const isError = (code: string, message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SightlineError, `expected SightlineError, got ${String(e)}`);
  assert.equal(e.code, code);
  assert.match(e.message, message);
  return true;
};

test('create returns the token once; only the secret hash reaches the database file', (t) => {
  const { store, tokens, dir } = open(t);
  const { token, record } = tokens.create({ name: 'ci', role: 'publisher', createdBy: 'admin' });
  const m = /^sl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/.exec(token);
  assert.ok(m, token);
  const [, id, secret] = m;
  assert.equal(record.id, id);
  assert.deepEqual(
    { ...record, id: '', createdAt: '' },
    {
      id: '',
      name: 'ci',
      role: 'publisher',
      createdAt: '',
      createdBy: 'admin',
      expiresAt: null,
      revokedAt: null,
      revokedBy: null,
    },
  );
  assert.deepEqual(tokens.list(), [record]);
  assert.ok(!JSON.stringify(tokens.list()).includes(secret));
  store.close(); // checkpoints the WAL into registry.db
  for (const f of ['registry.db', 'registry.db-wal']) {
    const p = join(dir, f);
    if (!existsSync(p)) continue;
    const bytes = readFileSync(p);
    assert.equal(bytes.includes(secret), false, `${f} holds the secret`);
    assert.equal(bytes.includes(token), false, `${f} holds the token`);
  }
  const raw = new Database(join(dir, 'registry.db'), { readonly: true });
  t.after(() => raw.close());
  assert.equal(raw.prepare('SELECT secret_hash FROM tokens').pluck().get(), hashTokenSecret(secret).toString('hex'));
});

test('authenticate: ok, with or without "Bearer", and every failure reason', (t) => {
  let now = new Date('2025-01-01T00:00:00.000Z');
  const { tokens } = open(t, () => now);
  const { token: viewer, record } = tokens.create({ name: 'dash', role: 'viewer', createdBy: 'admin' });
  const { token: shortLived } = tokens.create({
    name: 'tmp',
    role: 'admin',
    createdBy: 'admin',
    expiresAt: '2025-01-02T00:00:00Z',
  });
  const { token: revoked } = tokens.create({ name: 'old', role: 'inferencer', createdBy: 'admin' });

  const ok = { ok: true, principal: { tokenId: record.id, name: 'dash', role: 'viewer' } };
  assert.deepEqual(tokens.authenticate(viewer), ok);
  assert.deepEqual(tokens.authenticate(`Bearer ${viewer}`), ok);
  assert.deepEqual(tokens.authenticate(`bearer   ${viewer} `), ok);

  assert.equal(tokens.authenticate(shortLived).ok, true);
  now = new Date('2025-01-02T00:00:00.000Z');
  assert.deepEqual(tokens.authenticate(shortLived), { ok: false, reason: 'expired' });
  assert.deepEqual(
    tokens.authenticate(shortLived, new Date('2025-01-01T12:00:00Z')).ok,
    true,
    'an explicit clock wins',
  );

  assert.deepEqual(tokens.revoke('old', 'admin'), { record: { ...tokens.get('old')! }, changed: true });
  assert.deepEqual(tokens.authenticate(revoked), { ok: false, reason: 'revoked' });
  assert.equal(tokens.revoke('old', 'admin').changed, false, 'a second revoke changes nothing');

  // Right id, wrong secret; and an id that does not exist: the same answer.
  const wrongSecret = viewer.slice(0, -4) + (viewer.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.deepEqual(tokens.authenticate(wrongSecret), { ok: false, reason: 'unknown' });
  assert.deepEqual(tokens.authenticate(`sl_0123456789abcdef_${'A'.repeat(43)}`), { ok: false, reason: 'unknown' });
  // A revoked or expired token with a wrong secret says nothing about its state.
  assert.deepEqual(tokens.authenticate(revoked.slice(0, -4) + (revoked.endsWith('AAAA') ? 'BBBB' : 'AAAA')), {
    ok: false,
    reason: 'unknown',
  });

  for (const bad of [
    '',
    'Bearer',
    'Basic dXNlcjpwYXNz',
    viewer.slice(0, -1),
    `${viewer}x`,
    viewer.replace('sl_', 'xx_'),
    viewer.toUpperCase(),
  ]) {
    assert.deepEqual(tokens.authenticate(bad), { ok: false, reason: 'malformed' }, bad);
  }
});

test('an unknown id costs the same hash and compare as a wrong secret', (t) => {
  const { tokens, hashed } = open(t);
  const { token } = tokens.create({ name: 'a', role: 'viewer', createdBy: 'root' });
  hashed.length = 0;
  const secret = 'B'.repeat(43);
  tokens.authenticate(`sl_fedcba9876543210_${secret}`);
  assert.deepEqual(hashed, [secret], 'the unknown id path hashes the presented secret');
  tokens.authenticate(token);
  assert.equal(hashed.length, 2);
  tokens.authenticate('garbage');
  assert.equal(hashed.length, 2, 'a malformed token is refused before any lookup');
});

test('names are unique forever; revoke by name or id; bad input is refused', (t) => {
  const { tokens, store } = open(t);
  const a = tokens.create({ name: 'ci', role: 'publisher', createdBy: 'root' }).record;
  assert.throws(
    () => tokens.create({ name: 'ci', role: 'viewer', createdBy: 'root' }),
    isError('ALREADY_EXISTS', /already exists/),
  );
  tokens.revoke(a.id, 'root');
  assert.throws(
    () => tokens.create({ name: 'ci', role: 'viewer', createdBy: 'root' }),
    isError('ALREADY_EXISTS', /never reused/),
  );
  assert.equal(tokens.get('ci')?.revokedBy, 'root');
  assert.throws(() => tokens.revoke('nope', 'root'), isError('NOT_FOUND', /no token/));
  assert.throws(
    () => tokens.create({ name: 'bad name', role: 'viewer', createdBy: 'root' }),
    isError('INVALID_INPUT', /token name/),
  );
  assert.throws(
    () => tokens.create({ name: 'x', role: 'root' as TokenRole, createdBy: 'root' }),
    isError('INVALID_INPUT', /role must be one of/),
  );
  assert.throws(
    () => tokens.create({ name: 'x', role: 'viewer', createdBy: '' }),
    isError('INVALID_INPUT', /createdBy/),
  );
  assert.throws(
    () => tokens.create({ name: 'x', role: 'viewer', createdBy: 'r', expiresAt: '2001-01-01' }),
    isError('INVALID_INPUT', /past/),
  );
  assert.throws(
    () => tokens.create({ name: 'x', role: 'viewer', createdBy: 'r', expiresAt: 'soon' }),
    isError('INVALID_INPUT', /not a date/),
  );
  // The schema keeps rows and their identity, whatever the code does.
  assert.throws(() => store.database.prepare('DELETE FROM tokens').run(), /never deleted/);
  assert.throws(() => store.database.prepare("UPDATE tokens SET role = 'admin'").run(), /only revocation/);
  assert.throws(
    () => store.database.prepare("UPDATE tokens SET revoked_at = 'x', revoked_by = 'y'").run(),
    /stays revoked/,
  );
});

test('with an AuditLog, token changes are audited in the same transaction', (t) => {
  const { store } = open(t);
  const audit = new AuditLog(store.database);
  const tokens = new TokenStore(store.database, { audit });
  const { record } = tokens.create({ name: 'ci', role: 'publisher', createdBy: 'alice', peer: 'ipv4:10.0.0.1:5000' });
  tokens.revoke('ci', 'bob');
  tokens.revoke('ci', 'bob'); // no change, no entry
  assert.throws(() => tokens.create({ name: 'ci', role: 'viewer', createdBy: 'alice' }));
  const entries = audit.list();
  assert.deepEqual(
    entries.map((e) => [e.principal, e.peer, e.action, e.target, e.outcome]),
    [
      ['alice', 'ipv4:10.0.0.1:5000', 'token.create', `ci (${record.id}, publisher)`, 'ok'],
      ['bob', '', 'token.revoke', `ci (${record.id}, publisher)`, 'ok'],
    ],
  );
  assert.equal(audit.verify().ok, true);
});

test('roles are capability sets: viewer ⊂ inferencer, viewer ⊂ publisher, admin has all', () => {
  const matrix = Object.fromEntries(
    TOKEN_ROLES.map((r) => [r, CAPABILITIES.filter((c: Capability) => roleAllows(r, c))]),
  );
  assert.deepEqual(matrix, {
    viewer: ['view'],
    inferencer: ['view', 'infer'],
    publisher: ['view', 'publish'],
    admin: ['view', 'infer', 'publish', 'administer'],
  });
  assert.equal(roleAllows('nobody' as TokenRole, 'view'), false);
});

test("a replica's TokenMirror reports a well-formed token whose id it lacks, and nothing else", (t) => {
  const { tokens } = open(t);
  const old = tokens.create({ name: 'old', role: 'viewer', createdBy: 'admin' }).token;
  let misses = 0;
  const mirror = new TokenMirror({ onUnknownId: () => misses++ });
  mirror.replace(tokens.digests());
  assert.equal(mirror.authenticate(old).ok, true);
  assert.equal(
    mirror.authenticate(old.slice(0, -1) + (old.endsWith('A') ? 'B' : 'A')).ok,
    false,
    'known id, wrong secret',
  );
  assert.equal(mirror.authenticate('not-a-token').ok, false, 'malformed');
  assert.equal(misses, 0, 'a wrong secret or a malformed token is no reason to sync');
  const created = tokens.create({ name: 'new', role: 'viewer', createdBy: 'admin' }).token;
  assert.deepEqual(mirror.authenticate(created), { ok: false, reason: 'unknown' });
  assert.equal(misses, 1, 'a token newer than the copy');
  mirror.replace(tokens.digests());
  assert.equal(mirror.authenticate(created).ok, true);
  tokens.revoke('new', 'admin');
  mirror.replace(tokens.digests());
  assert.deepEqual(mirror.authenticate(created), { ok: false, reason: 'revoked' });
  assert.equal(misses, 1, 'a revoked token is known');
});
