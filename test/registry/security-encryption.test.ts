import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'node:test';
import { randomBytes } from 'node:crypto';
import { SightlineError } from '../../src/errors.js';
import {
  BlobStore,
  ENCRYPTION_OVERHEAD,
  RegistryStore,
  decryptAllBlobs,
  generateKey,
  keyId,
  loadKey,
  rotateBlobKey,
  verifyBlobs,
} from '../../src/registry/index.js';
import { chunked, migrationsDir, newVersion, sha256Of, tempDir } from './helpers.js';

const childScript = fileURLToPath(new URL('./security-rotate-child.js', import.meta.url));

const isError = (code: string, message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof SightlineError, `expected SightlineError, got ${String(e)}`);
  assert.equal(e.code, code);
  assert.match(e.message, message);
  return true;
};

async function put(blobs: BlobStore, bytes: Uint8Array): Promise<string> {
  return (await blobs.putStream(chunked(bytes, 64 * 1024), { maxBytes: 1 << 26 })).sha256;
}

/** True if any 32-byte window of `plain` (sampled every 4 KiB) appears in `file`. */
function leaksPlain(file: Buffer, plain: Buffer): boolean {
  for (let i = 0; i + 32 <= plain.length; i += 4096) if (file.includes(plain.subarray(i, i + 32))) return true;
  return false;
}

test('loadKey: hex, base64, base64url, file or env; clear errors that never quote the key', (t) => {
  const key = generateKey();
  const dir = tempDir(t);
  const file = join(dir, 'key');
  writeFileSync(file, `${key.toString('base64')}\n`);
  assert.deepEqual(loadKey({ keyFile: file }, {}), key);
  assert.deepEqual(loadKey({ keyEnv: 'K' }, { K: key.toString('hex').toUpperCase() }), key);
  assert.deepEqual(loadKey({ keyEnv: 'K' }, { K: key.toString('base64url') }), key);
  assert.equal(loadKey({}, {}), null);

  const short = randomBytes(16).toString('hex');
  assert.throws(
    () => loadKey({ keyEnv: 'K' }, { K: short }),
    (e: unknown) => {
      isError('INVALID_INPUT', /environment variable K is 32 hex digits; AES-256 needs 64/)(e);
      assert.ok(!(e as Error).message.includes(short));
      return true;
    },
  );
  assert.throws(
    () => loadKey({ keyEnv: 'K' }, { K: randomBytes(24).toString('base64') }),
    isError('INVALID_INPUT', /decodes to 24 bytes; AES-256 needs exactly 32/),
  );
  assert.throws(
    () => loadKey({ keyEnv: 'K' }, { K: 'not a key!' }),
    isError('INVALID_INPUT', /not 64 hex digits or base64/),
  );
  assert.throws(() => loadKey({ keyEnv: 'K' }, {}), isError('INVALID_INPUT', /K is not set/));
  assert.throws(
    () => loadKey({ keyFile: join(dir, 'absent') }, {}),
    isError('INVALID_INPUT', /cannot be read \(ENOENT\)/),
  );
  assert.throws(() => loadKey({ keyFile: file, keyEnv: 'K' }, { K: 'x' }), isError('INVALID_INPUT', /not both/));
  assert.throws(() => new BlobStore(dir, { key: randomBytes(31) }), isError('INVALID_INPUT', /32 bytes/));
});

test('encrypted round trip: ciphertext on disk, plain sha256 and plain bytes back', async (t) => {
  const dir = tempDir(t);
  const key = generateKey();
  const blobs = new BlobStore(dir, { key });
  assert.equal(blobs.keyId, keyId(key));
  const plain = randomBytes(300_000);
  const sha = await put(blobs, plain);
  assert.equal(sha, sha256Of(plain), 'named by the plain content');
  const onDisk = readFileSync(blobs.path(sha));
  assert.equal(onDisk.length, plain.length + ENCRYPTION_OVERHEAD);
  assert.equal(onDisk.subarray(0, 6).toString('latin1'), 'SLENC1');
  assert.equal(onDisk.subarray(6, 14).toString('hex'), keyId(key));
  assert.equal(leaksPlain(onDisk, plain), false);
  assert.equal(statSync(blobs.path(sha)).mode & 0o777, 0o444);
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  assert.deepEqual(await blobs.read(sha), plain);
  assert.deepEqual(await blobs.check(sha, plain.length), { ok: true });
  assert.equal(await blobs.verify(sha), true);
  assert.deepEqual(await blobs.encryption(sha), { encrypted: true, keyId: keyId(key) });

  // Same bytes twice: a different IV, the same name.
  assert.equal(await put(blobs, plain), sha);
  assert.notDeepEqual(readFileSync(blobs.path(sha)).subarray(14, 26), onDisk.subarray(14, 26));

  // An empty model encrypts too.
  const empty = await put(blobs, new Uint8Array(0));
  assert.deepEqual(await blobs.read(empty), Buffer.alloc(0));
  assert.deepEqual(await blobs.check(empty, 0), { ok: true });
});

test('a missing or wrong key is a clear PRECONDITION, never garbage', async (t) => {
  const dir = tempDir(t);
  const key = generateKey();
  const other = generateKey();
  const sha = await put(new BlobStore(dir, { key }), randomBytes(10_000));

  const none = new BlobStore(dir);
  await assert.rejects(
    none.read(sha),
    isError(
      'PRECONDITION',
      new RegExp(`^model blobs are encrypted with key ${keyId(key)}; the configured key is none$`),
    ),
  );
  const wrong = new BlobStore(dir, { key: other });
  await assert.rejects(
    wrong.read(sha),
    isError('PRECONDITION', new RegExp(`encrypted with key ${keyId(key)}; the configured key is ${keyId(other)}`)),
  );
  const c = await wrong.check(sha, 10_000);
  assert.equal(c.ok, false);
  assert.equal(!c.ok && c.keyMissing, true);
  // With the old key as a previous key, it reads (a rotation with the server up).
  assert.equal((await new BlobStore(dir, { key: other, previousKeys: [key] }).read(sha)).length, 10_000);
});

test('a damaged encrypted blob fails authentication: read refuses, check says why', async (t) => {
  const dir = tempDir(t);
  const key = generateKey();
  const blobs = new BlobStore(dir, { key });
  const plain = randomBytes(50_000);
  const sha = await put(blobs, plain);
  const p = blobs.path(sha);
  const good = readFileSync(p);
  chmodSync(p, 0o644);
  for (const at of [100, 20 /* IV */, good.length - 3 /* tag */]) {
    const bad = Buffer.from(good);
    bad[at] ^= 1;
    writeFileSync(p, bad);
    await assert.rejects(blobs.read(sha), (e: unknown) => {
      isError('PRECONDITION', /is corrupt: it fails authentication/)(e);
      assert.equal((e as SightlineError).fields.corrupt, true);
      return true;
    });
    assert.deepEqual(await blobs.check(sha, plain.length), {
      ok: false,
      reason: 'encrypted blob fails authentication (damaged or tampered with)',
    });
  }
  writeFileSync(p, good.subarray(0, good.length - 1));
  assert.deepEqual(await blobs.check(sha, plain.length), {
    ok: false,
    reason: `encrypted blob is ${good.length - 1} bytes, expected ${good.length} (${plain.length} plus ${ENCRYPTION_OVERHEAD} of header and tag)`,
  });
  await assert.rejects(blobs.read(sha), isError('PRECONDITION', /fails authentication/));
  writeFileSync(p, good);
  assert.deepEqual(await blobs.read(sha), plain);
});

test('plain blobs stay readable with a key configured; a plain upload cannot pose as encrypted', async (t) => {
  const dir = tempDir(t);
  const plainStore = new BlobStore(dir);
  const old = randomBytes(5000);
  const sha = await put(plainStore, old);
  const withKey = new BlobStore(dir, { key: generateKey() });
  assert.deepEqual(await withKey.read(sha), old);
  assert.deepEqual(await withKey.check(sha, old.length), { ok: true });
  assert.deepEqual(await withKey.encryption(sha), { encrypted: false });
  const fake = Buffer.concat([Buffer.from('SLENC1'), randomBytes(100)]);
  // Split across chunks so the magic check has to join them.
  await assert.rejects(
    plainStore.putStream(chunked(fake, 4), { maxBytes: 1000 }),
    isError('INVALID_INPUT', /encrypted Sightline blob/),
  );
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);
  // With a key it is just content: encrypted, and it reads back as itself.
  const s2 = await put(withKey, fake);
  assert.deepEqual(await withKey.read(s2), fake);
});

test('verifyBlobs works on encrypted blobs; a missing key stops it with a clear error instead of marking corrupt', async (t) => {
  const dir = tempDir(t);
  const store = RegistryStore.open(dir, migrationsDir);
  t.after(() => store.close());
  const key = generateKey();
  const blobs = new BlobStore(dir, { key });
  const a = randomBytes(20_000);
  const b = randomBytes(30_000);
  await put(blobs, a);
  await put(new BlobStore(dir), b); // an older, plain one
  store.insertVersion(newVersion('yolo', a));
  store.insertVersion(newVersion('yolo', b));
  assert.deepEqual(await verifyBlobs(store, blobs), { checked: 2, corrupt: [], repaired: [] });

  await assert.rejects(
    verifyBlobs(store, new BlobStore(dir)),
    isError(
      'PRECONDITION',
      /encrypted with key [0-9a-f]{16}; the configured key is none: 1 version\(s\) cannot be read \(yolo v1\)/,
    ),
  );
  const report = await verifyBlobs(store, new BlobStore(dir), { allowLocked: true });
  assert.deepEqual(
    report.locked?.map((l) => l.version),
    [1],
  );
  assert.equal(store.getVersion('yolo', 1)?.state, 'ok', 'not marked corrupt for want of a key');

  // A truncated encrypted blob is corrupt, key or not.
  const p = blobs.path(sha256Of(a));
  chmodSync(p, 0o644);
  writeFileSync(p, readFileSync(p).subarray(0, 1000));
  const r = await verifyBlobs(store, blobs);
  assert.deepEqual(
    r.corrupt.map((c) => c.version),
    [1],
  );
  assert.match(r.corrupt[0].reason, /encrypted blob is 1000 bytes, expected 20042/);
});

/** `n` blobs: the first `plainCount` in the clear, the rest under `key`; returns name → content. */
async function seed(
  dir: string,
  key: Buffer,
  n: number,
  plainCount: number,
  size = 40_000,
): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (let i = 0; i < n; i++) {
    const bytes = randomBytes(size);
    out.set(await put(new BlobStore(dir, { key: i < plainCount ? null : key }), bytes), bytes);
  }
  return out;
}

async function assertAllUnder(dir: string, key: Buffer, old: Buffer, content: Map<string, Buffer>): Promise<void> {
  const reader = new BlobStore(dir, { key });
  const oldOnly = new BlobStore(dir, { key: old });
  for (const [sha, bytes] of content) {
    assert.deepEqual(await reader.encryption(sha), { encrypted: true, keyId: keyId(key) }, sha);
    assert.deepEqual(await reader.read(sha), bytes);
    await assert.rejects(oldOnly.read(sha), isError('PRECONDITION', /encrypted with key/));
  }
}

test('rotateBlobKey: interrupted after some blobs, then resumed by running it again', async (t) => {
  const dir = tempDir(t);
  const [a, b] = [generateKey(), generateKey()];
  const content = await seed(dir, a, 6, 2);
  let seen = 0;
  await assert.rejects(
    rotateBlobKey(dir, {
      from: a,
      to: b,
      onBlob: () => {
        if (++seen === 3) throw new Error('crash');
      },
    }),
    /crash/,
  );
  const states = await Promise.all([...content.keys()].map((s) => new BlobStore(dir).encryption(s)));
  const underB = states.filter((s) => s?.encrypted && s.keyId === keyId(b)).length;
  assert.equal(underB, 3, 'three rewritten before the crash');

  const r = await rotateBlobKey(dir, { from: a, to: b });
  assert.deepEqual(r, { total: 6, rotated: 3, skipped: 3, failed: [] });
  await assertAllUnder(dir, b, a, content);
  assert.deepEqual(
    await rotateBlobKey(dir, { from: a, to: b }),
    { total: 6, rotated: 0, skipped: 6, failed: [] },
    'idempotent',
  );
  assert.deepEqual(readdirSync(join(dir, 'tmp')), []);

  // And back to the clear.
  assert.deepEqual(await decryptAllBlobs(dir, b), { total: 6, rotated: 6, skipped: 0, failed: [] });
  for (const [sha, bytes] of content) assert.deepEqual(readFileSync(join(dir, 'blobs', 'sha256', sha)), bytes);
});

test('rotateBlobKey: SIGKILLed mid-rotation, resumed, every blob under the new key', async (t) => {
  const dir = tempDir(t);
  const [a, b] = [generateKey(), generateKey()];
  const content = await seed(dir, a, 12, 3, 1_000_000);
  const child = spawn(process.execPath, [childScript, dir, a.toString('hex'), b.toString('hex')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, 'exit');
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('done 3\n')) {
        child.kill('SIGKILL');
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`rotation child exited by itself (code ${code}): ${stderr}`)));
  });
  const [, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, 'SIGKILL', stderr);
  assert.ok(!out.includes('finished'), 'killed before the end');

  // Every blob is whole under one key or the other (the reader knows both).
  const both = new BlobStore(dir, { key: b, previousKeys: [a] });
  for (const [sha, bytes] of content) assert.deepEqual(await both.read(sha), bytes);

  const r = await rotateBlobKey(dir, { from: a, to: b });
  assert.equal(r.total, 12);
  assert.ok(r.skipped >= 3, `skipped ${r.skipped}`);
  assert.deepEqual(r.failed, []);
  await assertAllUnder(dir, b, a, content);
  await new BlobStore(dir).sweepTemp(); // what start-up does with a write cut short
});

test('rotateBlobKey refuses to encrypt a damaged plain blob and reports foreign keys', async (t) => {
  const dir = tempDir(t);
  const [a, b, c] = [generateKey(), generateKey(), generateKey()];
  const content = await seed(dir, a, 3, 1);
  const [plainSha] = content.keys();
  const p = join(dir, 'blobs', 'sha256', plainSha);
  chmodSync(p, 0o644);
  writeFileSync(p, randomBytes(100));
  const foreign = await put(new BlobStore(dir, { key: c }), randomBytes(100));
  const r = await rotateBlobKey(dir, { from: a, to: b });
  assert.equal(r.rotated, 2);
  assert.deepEqual(r.failed.map((f) => f.sha256).sort(), [plainSha, foreign].sort());
  assert.match(r.failed.find((f) => f.sha256 === plainSha)!.reason, /is corrupt: its content hashes to/);
  assert.match(r.failed.find((f) => f.sha256 === foreign)!.reason, new RegExp(`encrypted with key ${keyId(c)}`));
  assert.deepEqual(await new BlobStore(dir).encryption(plainSha), { encrypted: false });
});
