import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import test from 'node:test';
import { BlobStore, RegistryStore, sweepOrphanBlobs, verifyBlobs } from '../../src/registry/index.js';
import { chunked, migrationsDir, newVersion, sha256Of, tempDir } from './helpers.js';

test('verifyBlobs marks edited and missing blobs corrupt, and clears the mark once the blob is sound', async (t) => {
  const dir = tempDir(t);
  const store = RegistryStore.open(dir, migrationsDir);
  t.after(() => store.close());
  const blobs = new BlobStore(dir);
  const contents = [randomBytes(3000), randomBytes(3000), randomBytes(3000)];
  for (const c of contents) {
    await blobs.putStream(chunked(c), { maxBytes: 1 << 20 });
    store.insertVersion(newVersion('yolo', c));
  }
  // v3's content is shared with another model: one damaged file makes both corrupt.
  store.insertVersion(newVersion('other', contents[2]));

  assert.deepEqual(await verifyBlobs(store, blobs), { checked: 4, corrupt: [], repaired: [] });

  const edited = Buffer.from(contents[0]);
  edited[0] ^= 1;
  chmodSync(blobs.path(sha256Of(contents[0])), 0o644);
  writeFileSync(blobs.path(sha256Of(contents[0])), edited);
  rmSync(blobs.path(sha256Of(contents[2])));

  const r = await verifyBlobs(store, blobs);
  assert.equal(r.checked, 4);
  assert.deepEqual(r.corrupt, [
    { model: 'other', version: 1, reason: 'blob file is missing' },
    {
      model: 'yolo',
      version: 1,
      reason: `blob content hashes to ${sha256Of(edited)}, expected ${sha256Of(contents[0])}`,
    },
    { model: 'yolo', version: 3, reason: 'blob file is missing' },
  ]);
  assert.deepEqual(r.repaired, []);
  assert.equal(store.getVersion('yolo', 1)?.state, 'corrupt');
  assert.equal(store.getVersion('yolo', 2)?.state, 'ok');
  assert.equal(store.getVersion('yolo', 3)?.corruptReason, 'blob file is missing');
  assert.throws(() => store.promote('yolo', 1, 'a', ''), { code: 'PRECONDITION' });

  // Running again reports the same without rewriting anything, then re-uploads repair.
  assert.equal((await verifyBlobs(store, blobs)).corrupt.length, 3);
  await blobs.putStream(chunked(contents[0]), { maxBytes: 1 << 20 });
  await blobs.putStream(chunked(contents[2]), { maxBytes: 1 << 20 });
  const fixed = await verifyBlobs(store, blobs);
  assert.deepEqual(fixed.corrupt, []);
  assert.deepEqual(fixed.repaired, [
    { model: 'other', version: 1 },
    { model: 'yolo', version: 1 },
    { model: 'yolo', version: 3 },
  ]);
  assert.deepEqual(store.promote('yolo', 1, 'a', ''), { from: null, to: 1 });
});

test('sweepOrphanBlobs removes only blobs no version references', async (t) => {
  const dir = tempDir(t);
  const store = RegistryStore.open(dir, migrationsDir);
  t.after(() => store.close());
  const blobs = new BlobStore(dir);
  const kept = await blobs.putStream(chunked(Buffer.from('kept')), { maxBytes: 100 });
  store.insertVersion(newVersion('yolo', 'kept'));
  const orphan = await blobs.putStream(chunked(Buffer.from('orphan')), { maxBytes: 100 });
  assert.deepEqual(await sweepOrphanBlobs(store, blobs), [orphan.sha256]);
  assert.deepEqual(await blobs.list(), [kept.sha256]);
});
