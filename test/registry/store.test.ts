import assert from 'node:assert/strict';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { type ErrorCode, SightlineError } from '../../src/errors.js';
import { RegistryStore } from '../../src/registry/index.js';
import { migrationsDir, newVersion, sha256Of, tempDir } from './helpers.js';

function openStore(t: TestContext): { store: RegistryStore; dir: string } {
  const dir = tempDir(t);
  let tick = Date.UTC(2025, 0, 1);
  // A clock that moves, so timestamps are distinct and predictable.
  const store = RegistryStore.open(dir, migrationsDir, { now: () => new Date((tick += 1000)) });
  t.after(() => store.close());
  return { store, dir };
}

/** Asserts fn throws a SightlineError with this code and a message matching `message`. */
function throwsCode(
  fn: () => unknown,
  code: ErrorCode,
  message: RegExp | string,
  fields?: Record<string, unknown>,
): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SightlineError, `expected SightlineError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    if (fields) for (const [k, v] of Object.entries(fields)) assert.deepEqual(e.fields[k], v, `fields.${k}`);
    return true;
  });
}

/** Inserts `n` versions of `model` with distinct content and returns their numbers. */
function seed(store: RegistryStore, model: string, n: number): number[] {
  return Array.from(
    { length: n },
    (_, i) => store.insertVersion(newVersion(model, `${model}-content-${i}-${Math.random()}`)).version,
  );
}

test('versions are numbered 1, 2, 3 per model and a number is never reused after delete', (t) => {
  const { store } = openStore(t);
  assert.deepEqual(seed(store, 'yolo', 3), [1, 2, 3]);
  assert.deepEqual(seed(store, 'other', 1), [1]);
  store.deleteVersion('yolo', 3, 'alice', 'bad export');
  assert.deepEqual(seed(store, 'yolo', 1), [4]);
  store.deleteVersion('yolo', 4, 'alice', '');
  store.deleteVersion('yolo', 1, 'alice', '');
  store.deleteVersion('yolo', 2, 'alice', '');
  assert.equal(store.getModel('yolo')?.versionCount, 0, 'the model outlives its versions');
  assert.deepEqual(seed(store, 'yolo', 1), [5]);
  assert.deepEqual(
    store.listVersions('yolo').map((v) => v.version),
    [5],
  );
});

test('insertVersion stores every field and returns it as read back', (t) => {
  const { store } = openStore(t);
  const v = store.insertVersion(
    newVersion('yolo', 'abc', {
      family: 'yolox',
      inputWidth: 416,
      inputHeight: 320,
      classNames: ['a', 'b'],
      onnxMetadata: { imgsz: '[416, 320]' },
      notes: 'n',
      sourceName: null,
    }),
  );
  assert.deepEqual(v, {
    model: 'yolo',
    version: 1,
    sha256: sha256Of('abc'),
    sizeBytes: 3,
    sourceName: null,
    createdAt: '2025-01-01T00:00:01.000Z',
    family: 'yolox',
    inputWidth: 416,
    inputHeight: 320,
    classNames: ['a', 'b'],
    onnxMetadata: { imgsz: '[416, 320]' },
    notes: 'n',
    state: 'ok',
    corruptReason: null,
  });
  assert.deepEqual(store.getVersion('yolo', 1), v);
  assert.deepEqual(store.allVersions(), [v]);
  assert.equal(store.getVersion('yolo', 2), undefined);
  assert.equal(store.getModel('nope'), undefined);
  throwsCode(() => store.insertVersion(newVersion('yolo', 'x', { sha256: 'ABC' })), 'INVALID_INPUT', /not a sha256/);
  throwsCode(() => store.insertVersion(newVersion('yolo', 'x', { sizeBytes: -1 })), 'INVALID_INPUT', /sizeBytes/);
  throwsCode(() => store.insertVersion(newVersion('yolo', 'x', { inputWidth: 0 })), 'INVALID_INPUT', /inputWidth/);
  throwsCode(() => store.insertVersion(newVersion('yolo', 'x', { family: '' })), 'INVALID_INPUT', /family/);
  assert.equal(store.getModel('yolo')?.nextVersion, 2, 'refused inserts allocate no number');
});

test('findVersionBySha finds a re-upload; inserting the same content twice is ALREADY_EXISTS', (t) => {
  const { store } = openStore(t);
  const v1 = store.insertVersion(newVersion('yolo', 'same bytes'));
  assert.deepEqual(store.findVersionBySha('yolo', sha256Of('same bytes')), v1);
  assert.equal(store.findVersionBySha('yolo', sha256Of('other bytes')), undefined);
  assert.equal(store.findVersionBySha('other', sha256Of('same bytes')), undefined);
  throwsCode(
    () => store.insertVersion(newVersion('yolo', 'same bytes')),
    'ALREADY_EXISTS',
    'model "yolo" already has this file as version 1',
    {
      version: 1,
    },
  );
  // The same file under another model is a separate version sharing the blob.
  assert.equal(store.insertVersion(newVersion('other', 'same bytes')).version, 1);
  throwsCode(() => store.findVersionBySha('yolo', '../../etc/passwd'), 'INVALID_INPUT', /not a sha256/);
});

test('promote: previous active becomes the rollback target; re-promoting the active version is a no-op', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 3);
  assert.deepEqual(store.promote('yolo', 1, 'alice', 'first'), { from: null, to: 1 });
  assert.deepEqual(pointers(store, 'yolo'), [1, null]);
  assert.deepEqual(store.promote('yolo', 2, 'bob', 'better mAP'), { from: 1, to: 2 });
  assert.deepEqual(pointers(store, 'yolo'), [2, 1]);
  assert.deepEqual(store.promote('yolo', 2, 'bob', 'retry'), { from: 2, to: 2 });
  assert.equal(store.history('yolo').length, 2, 'a no-op promote writes no history');
  assert.deepEqual(store.promote('yolo', 3, 'carol', ''), { from: 2, to: 3 });
  assert.deepEqual(pointers(store, 'yolo'), [3, 2]);
  // Promoting the rollback target swaps the two.
  assert.deepEqual(store.promote('yolo', 2, 'carol', 'back'), { from: 3, to: 2 });
  assert.deepEqual(pointers(store, 'yolo'), [2, 3]);
  assert.deepEqual(
    store.history('yolo').map((h) => [h.action, h.fromVersion, h.toVersion, h.actor, h.reason]),
    [
      ['promote', 3, 2, 'carol', 'back'],
      ['promote', 2, 3, 'carol', ''],
      ['promote', 1, 2, 'bob', 'better mAP'],
      ['promote', null, 1, 'alice', 'first'],
    ],
  );
});

test('promote errors: unknown model, unknown version, corrupt version, bad input', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 2);
  throwsCode(() => store.promote('nope', 1, 'a', ''), 'NOT_FOUND', 'unknown model "nope"');
  throwsCode(() => store.promote('yolo', 9, 'a', ''), 'NOT_FOUND', 'model "yolo" has no version 9', {
    model: 'yolo',
    version: 9,
  });
  store.markCorrupt('yolo', 2, 'blob file is missing');
  throwsCode(
    () => store.promote('yolo', 2, 'a', ''),
    'PRECONDITION',
    'cannot promote yolo v2: it is marked corrupt (blob file is missing); re-upload the file or promote another version',
  );
  throwsCode(() => store.promote('yolo', 0, 'a', ''), 'INVALID_INPUT', /positive integer/);
  throwsCode(() => store.promote('yolo', 1.5, 'a', ''), 'INVALID_INPUT', /positive integer/);
  throwsCode(() => store.promote('yolo', 1, '', ''), 'INVALID_INPUT', /actor/);
  store.markOk('yolo', 2);
  assert.deepEqual(store.promote('yolo', 2, 'a', ''), { from: null, to: 2 });
});

test('rollback swaps active and rollback target, and refuses when there is none', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 2);
  throwsCode(
    () => store.rollback('yolo', 'a', ''),
    'PRECONDITION',
    'cannot roll back yolo: no version has been promoted yet',
  );
  store.promote('yolo', 1, 'a', '');
  throwsCode(
    () => store.rollback('yolo', 'a', ''),
    'PRECONDITION',
    'cannot roll back yolo: there is no rollback target (v1 is active and nothing was active before it)',
  );
  store.promote('yolo', 2, 'a', '');
  assert.deepEqual(store.rollback('yolo', 'ops', 'p99 regression'), { from: 2, to: 1 });
  assert.deepEqual(pointers(store, 'yolo'), [1, 2]);
  assert.deepEqual(store.rollback('yolo', 'ops', 'undo'), { from: 1, to: 2 });
  assert.deepEqual(pointers(store, 'yolo'), [2, 1]);
  const [last] = store.history('yolo', 1);
  assert.deepEqual(
    [last.action, last.fromVersion, last.toVersion, last.actor, last.reason],
    ['rollback', 1, 2, 'ops', 'undo'],
  );
  store.markCorrupt('yolo', 1, 'blob content hashes to x, expected y');
  throwsCode(
    () => store.rollback('yolo', 'ops', ''),
    'PRECONDITION',
    /cannot roll back yolo to v1: it is marked corrupt/,
  );
  throwsCode(() => store.rollback('nope', 'ops', ''), 'NOT_FOUND', 'unknown model "nope"');
});

test('deleteVersion refuses the active and rollback versions and reports whether the blob is still used', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 3);
  store.insertVersion(newVersion('yolo', 'shared'));
  store.insertVersion(newVersion('other', 'shared'));
  store.promote('yolo', 1, 'a', '');
  store.promote('yolo', 2, 'a', '');
  throwsCode(
    () => store.deleteVersion('yolo', 2, 'a', ''),
    'PRECONDITION',
    'cannot delete yolo v2: it is the active version; promote another version first',
    {
      pointer: 'active',
    },
  );
  throwsCode(
    () => store.deleteVersion('yolo', 1, 'a', ''),
    'PRECONDITION',
    /^cannot delete yolo v1: it is the rollback target;/,
    { pointer: 'rollback' },
  );
  throwsCode(() => store.deleteVersion('yolo', 99, 'a', ''), 'NOT_FOUND', 'model "yolo" has no version 99');
  throwsCode(() => store.deleteVersion('nope', 1, 'a', ''), 'NOT_FOUND', 'unknown model "nope"');

  const v3 = store.getVersion('yolo', 3);
  assert.deepEqual(store.deleteVersion('yolo', 3, 'alice', 'unused'), {
    sha256: v3?.sha256,
    blobStillReferenced: false,
  });
  assert.deepEqual(store.deleteVersion('yolo', 4, 'alice', ''), {
    sha256: sha256Of('shared'),
    blobStillReferenced: true,
  });
  assert.equal(store.isBlobReferenced(sha256Of('shared')), true);
  assert.deepEqual(store.deleteVersion('other', 1, 'alice', ''), {
    sha256: sha256Of('shared'),
    blobStillReferenced: false,
  });
  assert.equal(store.isBlobReferenced(sha256Of('shared')), false);
  assert.equal(store.getVersion('yolo', 3), undefined);
  const [h] = store.history('yolo', 1);
  assert.deepEqual([h.action, h.fromVersion, h.toVersion], ['delete', 4, null]);
  assert.deepEqual(
    store.listModels().map((m) => [m.name, m.activeVersion, m.rollbackVersion, m.versionCount, m.nextVersion]),
    [
      ['other', null, null, 0, 2],
      ['yolo', 2, 1, 2, 5],
    ],
  );
});

test('history is newest first, limited, and append-only in the database itself', (t) => {
  const { store, dir } = openStore(t);
  seed(store, 'yolo', 3);
  store.promote('yolo', 1, 'a', 'one');
  store.promote('yolo', 2, 'a', 'two');
  store.promote('yolo', 3, 'a', 'three');
  assert.deepEqual(
    store.history('yolo', 2).map((h) => h.reason),
    ['three', 'two'],
  );
  assert.deepEqual(
    store.history('yolo').map((h) => h.at),
    ['2025-01-01T00:00:06.000Z', '2025-01-01T00:00:05.000Z', '2025-01-01T00:00:04.000Z'],
  );
  throwsCode(() => store.history('yolo', 0), 'INVALID_INPUT', /limit/);
  throwsCode(() => store.history('nope'), 'NOT_FOUND', 'unknown model "nope"');

  const raw = new Database(join(dir, 'registry.db'));
  t.after(() => raw.close());
  raw.pragma('foreign_keys = ON');
  assert.throws(
    () => raw.prepare("UPDATE pointer_history SET reason = 'edited'").run(),
    /append-only: rows cannot be updated/,
  );
  assert.throws(() => raw.prepare('DELETE FROM pointer_history').run(), /append-only: rows cannot be deleted/);
  // The schema also keeps the pointers and the counter honest against direct writes.
  assert.throws(() => raw.prepare("UPDATE models SET active_version = 42 WHERE name = 'yolo'").run(), /FOREIGN KEY/);
  assert.throws(() => raw.prepare("DELETE FROM versions WHERE model = 'yolo' AND version = 3").run(), /FOREIGN KEY/);
  assert.throws(() => raw.prepare("UPDATE models SET next_version = 1 WHERE name = 'yolo'").run(), /never reused/);
  assert.throws(
    () => raw.prepare("UPDATE versions SET sha256 = ? WHERE model = 'yolo'").run(sha256Of('x')),
    /immutable/,
  );
  assert.equal(store.history('yolo').length, 3);
});

test('model names are validated in every public method', (t) => {
  const { store } = openStore(t);
  const bad = ['', '../etc', 'a b', '-lead', '.hidden', 'x'.repeat(129), 'naïve', 'a/b'];
  for (const name of bad) {
    const msg = /^invalid model name .*: use 1-128 letters, digits/;
    throwsCode(() => store.insertVersion(newVersion(name, 'c')), 'INVALID_INPUT', msg);
    throwsCode(() => store.getModel(name), 'INVALID_INPUT', msg);
    throwsCode(() => store.listVersions(name), 'INVALID_INPUT', msg);
    throwsCode(() => store.getVersion(name, 1), 'INVALID_INPUT', msg);
    throwsCode(() => store.findVersionBySha(name, sha256Of('c')), 'INVALID_INPUT', msg);
    throwsCode(() => store.promote(name, 1, 'a', ''), 'INVALID_INPUT', msg);
    throwsCode(() => store.rollback(name, 'a', ''), 'INVALID_INPUT', msg);
    throwsCode(() => store.deleteVersion(name, 1, 'a', ''), 'INVALID_INPUT', msg);
    throwsCode(() => store.history(name), 'INVALID_INPUT', msg);
    throwsCode(() => store.markCorrupt(name, 1, 'r'), 'INVALID_INPUT', msg);
    throwsCode(() => store.markOk(name, 1), 'INVALID_INPUT', msg);
    throwsCode(() => store.putProfile(name, 1, 'k', {}), 'INVALID_INPUT', msg);
    throwsCode(() => store.getProfile(name, 1, 'k'), 'INVALID_INPUT', msg);
  }
  for (const good of ['a', 'yolo11n', 'YOLO_v8.n-coco', '9x', 'x'.repeat(128)])
    store.insertVersion(newVersion(good, good));
  assert.equal(store.listModels().length, 5);
});

test('markCorrupt / markOk', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 1);
  store.markCorrupt('yolo', 1, 'blob file is missing');
  assert.deepEqual(
    [store.getVersion('yolo', 1)?.state, store.getVersion('yolo', 1)?.corruptReason],
    ['corrupt', 'blob file is missing'],
  );
  store.markOk('yolo', 1);
  assert.deepEqual([store.getVersion('yolo', 1)?.state, store.getVersion('yolo', 1)?.corruptReason], ['ok', null]);
  throwsCode(() => store.markCorrupt('yolo', 2, 'x'), 'NOT_FOUND', 'model "yolo" has no version 2');
  throwsCode(() => store.markCorrupt('yolo', 1, ''), 'INVALID_INPUT', /reason/);
});

test('profiles: put, replace, get, and removed with their version', (t) => {
  const { store } = openStore(t);
  seed(store, 'yolo', 2);
  const body = { brightness: { mean: 0.4, hist: [1, 2, 3] } };
  const p = store.putProfile('yolo', 1, 'image-stats', body);
  assert.deepEqual(p, { model: 'yolo', version: 1, kind: 'image-stats', createdAt: p.createdAt, body });
  assert.deepEqual(store.getProfile('yolo', 1, 'image-stats'), p);
  store.putProfile('yolo', 1, 'image-stats', { replaced: true });
  assert.deepEqual(store.getProfile('yolo', 1, 'image-stats')?.body, { replaced: true });
  assert.equal(store.getProfile('yolo', 1, 'other'), undefined);
  throwsCode(() => store.putProfile('yolo', 7, 'image-stats', {}), 'NOT_FOUND', 'model "yolo" has no version 7');
  throwsCode(() => store.putProfile('yolo', 1, 'bad kind', {}), 'INVALID_INPUT', /profile kind/);
  throwsCode(() => store.putProfile('yolo', 1, 'k', undefined), 'INVALID_INPUT', /JSON/);
  store.deleteVersion('yolo', 1, 'a', '');
  assert.equal(store.getProfile('yolo', 1, 'image-stats'), undefined);
});

function pointers(store: RegistryStore, model: string): [number | null, number | null] {
  const m = store.getModel(model);
  assert.ok(m);
  return [m.activeVersion, m.rollbackVersion];
}
