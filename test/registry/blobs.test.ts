import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { SightlineError } from '../../src/errors.js';
import { BlobStore } from '../../src/registry/index.js';
import { chunked, sha256Of, tempDir } from './helpers.js';

function openBlobs(t: TestContext): { blobs: BlobStore; dir: string } {
  const dir = tempDir(t);
  return { blobs: new BlobStore(dir), dir };
}

const tmpEntries = (dir: string): string[] => readdirSync(join(dir, 'tmp'));

function isError(code: string, message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof SightlineError, `expected SightlineError, got ${String(e)}`);
    assert.equal(e.code, code);
    assert.match(e.message, message);
    return true;
  };
}

test('putStream stores content under its sha256, durable and read-only; read/verify/path agree', async (t) => {
  const { blobs, dir } = openBlobs(t);
  const bytes = randomBytes(100_000);
  const sha = sha256Of(bytes);
  assert.deepEqual(await blobs.putStream(chunked(bytes, 7_777), { maxBytes: 1 << 20 }), {
    sha256: sha,
    size: bytes.byteLength,
  });
  assert.equal(blobs.path(sha), join(dir, 'blobs', 'sha256', sha));
  assert.deepEqual(await blobs.read(sha), bytes);
  assert.equal(await blobs.verify(sha), true);
  assert.equal(await blobs.exists(sha), true);
  assert.equal(statSync(blobs.path(sha)).mode & 0o777, 0o444);
  assert.deepEqual(tmpEntries(dir), []);
  // Same content again (with the expected hash, in upper case): same blob, no leftovers.
  assert.deepEqual(
    await blobs.putStream(chunked(bytes), { maxBytes: bytes.byteLength, expectedSha256: sha.toUpperCase() }),
    {
      sha256: sha,
      size: bytes.byteLength,
    },
  );
  assert.deepEqual(await blobs.list(), [sha]);
  assert.deepEqual(tmpEntries(dir), []);
});

test('an empty upload is a valid (empty) blob', async (t) => {
  const { blobs } = openBlobs(t);
  assert.deepEqual(await blobs.putStream(chunked(new Uint8Array(0)), { maxBytes: 10 }), {
    sha256: sha256Of(''),
    size: 0,
  });
});

test('exceeding maxBytes aborts while streaming, stops the source and leaves nothing behind', async (t) => {
  const { blobs, dir } = openBlobs(t);
  let pulled = 0;
  let finished = false;
  async function* endless(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        pulled++;
        yield new Uint8Array(1000);
      }
    } finally {
      finished = true;
    }
  }
  await assert.rejects(
    blobs.putStream(endless(), { maxBytes: 10_500 }),
    isError('INVALID_INPUT', /exceeds the upload limit of 10500 bytes/),
  );
  assert.equal(pulled, 11, 'stopped at the first chunk over the limit');
  assert.equal(finished, true, 'the source was closed');
  assert.deepEqual(tmpEntries(dir), []);
  assert.deepEqual(await blobs.list(), []);
  // Exactly at the limit is fine.
  const ok = randomBytes(10_500);
  assert.equal((await blobs.putStream(chunked(ok), { maxBytes: 10_500 })).size, 10_500);
});

test('an expected sha256 mismatch is INVALID_INPUT naming both hashes, and nothing is stored', async (t) => {
  const { blobs, dir } = openBlobs(t);
  const bytes = randomBytes(5000);
  const wrong = sha256Of('something else');
  await assert.rejects(
    blobs.putStream(chunked(bytes), { maxBytes: 1 << 20, expectedSha256: wrong }),
    isError('INVALID_INPUT', new RegExp(`^sha256 mismatch: expected ${wrong}, got ${sha256Of(bytes)}$`)),
  );
  assert.deepEqual(tmpEntries(dir), []);
  assert.deepEqual(await blobs.list(), []);
});

test('a malformed expected sha256 is refused before reading the upload', async (t) => {
  const { blobs, dir } = openBlobs(t);
  let started = false;
  async function* source(): AsyncGenerator<Uint8Array> {
    started = true;
    yield new Uint8Array(1);
  }
  await assert.rejects(
    blobs.putStream(source(), { maxBytes: 10, expectedSha256: '../../etc/passwd' }),
    isError('INVALID_INPUT', /not a sha256/),
  );
  assert.equal(started, false);
  assert.deepEqual(tmpEntries(dir), []);
});

test('a source that fails mid-stream leaves no temporary file', async (t) => {
  const { blobs, dir } = openBlobs(t);
  async function* broken(): AsyncGenerator<Uint8Array> {
    yield new Uint8Array(100);
    throw new Error('client went away');
  }
  await assert.rejects(blobs.putStream(broken(), { maxBytes: 1000 }), /client went away/);
  assert.deepEqual(tmpEntries(dir), []);
});

test('hashes are validated before any path is built', async (t) => {
  const { blobs } = openBlobs(t);
  for (const bad of ['../../../etc/passwd', 'A'.repeat(64), 'a'.repeat(63), `${'a'.repeat(64)}/x`, '']) {
    assert.throws(() => blobs.path(bad), isError('INVALID_INPUT', /not a sha256/));
    await assert.rejects(blobs.read(bad), isError('INVALID_INPUT', /not a sha256/));
    await assert.rejects(blobs.verify(bad), isError('INVALID_INPUT', /not a sha256/));
    await assert.rejects(blobs.remove(bad), isError('INVALID_INPUT', /not a sha256/));
  }
});

test('verify/check catch a missing, truncated or edited blob; re-uploading repairs it', async (t) => {
  const { blobs } = openBlobs(t);
  const bytes = randomBytes(4096);
  const { sha256 } = await blobs.putStream(chunked(bytes), { maxBytes: 1 << 20 });
  const p = blobs.path(sha256);

  chmodSync(p, 0o644);
  const edited = Buffer.from(bytes);
  edited[100] ^= 0xff;
  writeFileSync(p, edited);
  assert.equal(await blobs.verify(sha256), false);
  assert.deepEqual(await blobs.check(sha256, 4096), {
    ok: false,
    reason: `blob content hashes to ${sha256Of(edited)}, expected ${sha256}`,
  });
  // read() verifies too: an edited plain blob is refused, never returned to a loader.
  await assert.rejects(blobs.read(sha256), (e: unknown) => {
    isError('PRECONDITION', new RegExp(`is corrupt: its content hashes to ${sha256Of(edited)}`))(e);
    assert.equal((e as SightlineError).fields.corrupt, true);
    return true;
  });

  writeFileSync(p, bytes.subarray(0, 10));
  assert.deepEqual(await blobs.check(sha256, 4096), { ok: false, reason: 'blob is 10 bytes, expected 4096' });

  await blobs.putStream(chunked(bytes), { maxBytes: 1 << 20 });
  assert.equal(await blobs.verify(sha256), true, 'the re-upload replaced the damaged file');

  await blobs.remove(sha256);
  await blobs.remove(sha256); // absent is fine
  assert.equal(existsSync(p), false);
  assert.equal(await blobs.verify(sha256), false);
  assert.deepEqual(await blobs.check(sha256), { ok: false, reason: 'blob file is missing' });
  await assert.rejects(blobs.read(sha256), isError('NOT_FOUND', /is missing/));
});

test('sweepTemp removes leftovers of a crashed upload', async (t) => {
  const { blobs, dir } = openBlobs(t);
  writeFileSync(join(dir, 'tmp', 'upload-deadbeef'), 'half a model');
  writeFileSync(join(dir, 'tmp', 'upload-cafe'), '');
  assert.equal(await blobs.sweepTemp(), 2);
  assert.deepEqual(tmpEntries(dir), []);
  assert.equal(await blobs.sweepTemp(), 0);
  // A store whose tmp/ was removed recreates it on construction.
  rmSync(join(dir, 'tmp'), { recursive: true });
  assert.equal(await new BlobStore(dir).sweepTemp(), 0);
});
