/**
 * Content-addressed model files: `<dataDir>/blobs/sha256/<hash>`. An upload is written to
 * `<dataDir>/tmp/`, hashed while streaming, fsynced, checked, then renamed into place and the directory
 * fsynced, so a blob path either does not exist or holds complete, durable bytes. The caller inserts
 * the registry row only after putStream resolves (a crash never leaves a row without its file).
 * Given a key, blobs are written AES-256-GCM encrypted (format in crypto.ts) and still named by the
 * sha256 of their plain content; plain and encrypted blobs are told apart by the file header.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { chmod, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { SightlineError } from '../errors.js';
import {
  BlobEncryptor,
  ENCRYPTION_OVERHEAD,
  ENC_MAGIC,
  HEADER_BYTES,
  TAG_BYTES,
  blobDecipher,
  blobKey,
  isEncryptedHead,
  keyMismatch,
  parseHeader,
  type BlobKey,
  type EncHeader,
} from './crypto.js';

const SHA256 = /^[0-9a-f]{64}$/;

/** Throws INVALID_INPUT unless `s` is 64 lowercase hex digits; every path built from a hash goes through here. */
export function assertSha256(s: unknown, what = 'sha256'): asserts s is string {
  if (typeof s !== 'string' || !SHA256.test(s)) {
    const shown = typeof s === 'string' ? JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s) : typeof s;
    throw new SightlineError('INVALID_INPUT', `${what} ${shown} is not a sha256 (64 lowercase hex digits)`, {
      field: what,
    });
  }
}

export interface PutOptions {
  /** If given, the upload is refused unless its content hashes to this (hex, any case). */
  readonly expectedSha256?: string;
  /** Upload size limit; exceeding it aborts the upload while it streams. */
  readonly maxBytes: number;
}

export interface PutResult {
  readonly sha256: string;
  readonly size: number;
}

/**
 * Why a blob is unusable, in words safe to show a client (no filesystem paths). `keyMissing`: the blob
 * is encrypted with a key this store was not given, so it is not known to be damaged, only unreadable.
 */
export type BlobCheck =
  { readonly ok: true } | { readonly ok: false; readonly reason: string; readonly keyMissing?: true };

/** How a blob is stored on disk. */
export type BlobEncryption = { readonly encrypted: false } | { readonly encrypted: true; readonly keyId: string };

export interface BlobStoreOptions {
  /**
   * AES-256 key (32 bytes, see loadKey). When set, new blobs are written encrypted with it; blobs stored
   * in the clear stay readable, so encryption can be switched on without rewriting (rotateBlobKey does).
   */
  readonly key?: Buffer | null;
  /** Keys that only decrypt: the old key while a rotation runs with the server up. */
  readonly previousKeys?: readonly Buffer[];
}

/** Bytes read at a time when decrypting or hashing. */
const CHUNK_BYTES = 1 << 20;

export class BlobStore {
  readonly blobDir: string;
  readonly tmpDir: string;
  /** The key new blobs are encrypted with, or null (stored in the clear). */
  private readonly writeKey: BlobKey | null;
  /** Every key this store can decrypt with, writeKey first. */
  private readonly keys: readonly BlobKey[];

  constructor(
    readonly dataDir: string,
    opts: BlobStoreOptions = {},
  ) {
    this.blobDir = join(dataDir, 'blobs', 'sha256');
    this.tmpDir = join(dataDir, 'tmp');
    mkdirSync(this.blobDir, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
    this.writeKey = opts.key ? blobKey(opts.key) : null;
    const keys = [...(this.writeKey ? [this.writeKey] : []), ...(opts.previousKeys ?? []).map(blobKey)];
    this.keys = keys.filter((k, i) => keys.findIndex((o) => o.id === k.id) === i);
  }

  /** Id of the key new blobs are encrypted with; null when they are stored in the clear. */
  get keyId(): string | null {
    return this.writeKey?.id ?? null;
  }

  /** Path of a blob (which may not exist). Throws INVALID_INPUT on a malformed hash. */
  path(sha256: string): string {
    assertSha256(sha256);
    return join(this.blobDir, sha256);
  }

  /**
   * Streams `chunks` into the store and returns the content's sha256 and size. On any failure (size
   * limit, hash mismatch, the source throwing) the temporary file is removed and nothing is stored.
   */
  async putStream(chunks: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<PutResult> {
    const { maxBytes } = opts;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new SightlineError('INTERNAL', `putStream: maxBytes must be a non-negative integer, got ${maxBytes}`);
    }
    // Validated before reading a byte, so a malformed hash costs the client nothing.
    const expected = opts.expectedSha256?.toLowerCase();
    if (expected !== undefined) assertSha256(expected, 'expected sha256');

    const tmpPath = join(this.tmpDir, `upload-${randomBytes(12).toString('hex')}`);
    const handle = await open(tmpPath, 'wx', 0o600);
    let closed = false;
    try {
      const hash = createHash('sha256');
      // The hash is always of the plain bytes: a blob's name does not depend on how it is stored.
      const enc = this.writeKey ? new BlobEncryptor(this.writeKey) : null;
      if (enc) await writeAll(handle, enc.header);
      // A plain blob must not look like an encrypted one; no ONNX file starts with the magic.
      let head = enc ? null : Buffer.alloc(0);
      let size = 0;
      for await (const chunk of chunks) {
        size += chunk.byteLength;
        if (size > maxBytes) {
          // Throwing inside for-await also calls the source's return(), so the client stream stops.
          throw new SightlineError('INVALID_INPUT', `model file exceeds the upload limit of ${maxBytes} bytes`, {
            maxBytes,
          });
        }
        if (head !== null) {
          head = Buffer.concat([head, chunk.subarray(0, ENC_MAGIC.length - head.length)]);
          if (head.length === ENC_MAGIC.length) {
            if (isEncryptedHead(head))
              throw new SightlineError('INVALID_INPUT', 'the file is an encrypted Sightline blob, not a model');
            head = null;
          }
        }
        hash.update(chunk);
        await writeAll(handle, enc ? enc.update(chunk) : chunk);
      }
      if (enc) await writeAll(handle, enc.final());
      await handle.sync();
      await handle.close();
      closed = true;

      const sha256 = hash.digest('hex');
      if (expected !== undefined && expected !== sha256) {
        throw new SightlineError('INVALID_INPUT', `sha256 mismatch: expected ${expected}, got ${sha256}`, {
          expected,
          actual: sha256,
        });
      }
      // Read-only so nothing edits a blob in place by accident; the directory entry can still be replaced.
      await chmod(tmpPath, 0o444);
      // rename replaces an existing blob atomically. With identical content that is harmless (open
      // readers keep the old inode), and it repairs a blob that was damaged on disk.
      await rename(tmpPath, join(this.blobDir, sha256));
      await fsyncDir(this.blobDir);
      return { sha256, size };
    } catch (e) {
      if (!closed) await handle.close().catch(() => undefined);
      await rm(tmpPath, { force: true }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Whole blob in memory, plain, and verified: the one place a model file is checked against its
   * name before anything uses it. NOT_FOUND if absent. The bytes are returned only if they hash to
   * the blob's name (an encrypted blob also must authenticate); otherwise PRECONDITION, never
   * garbage: for a key this store lacks (fields.keyId) or a damaged file (fields.corrupt = true).
   */
  async read(sha256: string): Promise<Buffer> {
    const p = this.path(sha256);
    let handle: FileHandle;
    try {
      handle = await open(p, 'r');
    } catch (e) {
      if (isNoEnt(e)) throw new SightlineError('NOT_FOUND', `blob ${sha256} is missing`, { sha256 });
      throw e;
    }
    try {
      // One handle throughout: a rotation renaming a new file into place cannot mix two files.
      const { size } = await handle.stat();
      const header = await readHeader(handle, size);
      const corrupt = (why: string) =>
        new SightlineError('PRECONDITION', `blob ${sha256} is corrupt: ${why}`, { sha256, corrupt: true, reason: why });
      if (!header) {
        const buf = Buffer.allocUnsafe(size);
        await readExactly(handle, buf, 0);
        const actual = createHash('sha256').update(buf).digest('hex');
        if (actual !== sha256) throw corrupt(`its content hashes to ${actual}`);
        return buf;
      }
      if (size < ENCRYPTION_OVERHEAD) throw corrupt('encrypted blob is truncated');
      const key = this.keys.find((k) => k.id === header.keyId);
      if (!key) throw keyMismatch(sha256, header.keyId, this.keys);
      const out = Buffer.allocUnsafe(size - ENCRYPTION_OVERHEAD);
      const hash = createHash('sha256');
      let off = 0;
      const ok = await decryptFile(handle, size, header, key, (plain) => {
        hash.update(plain);
        off += plain.copy(out, off);
      });
      if (!ok) throw corrupt('it fails authentication (damaged or tampered with)');
      const actual = hash.digest('hex');
      if (actual !== sha256) throw corrupt(`its content hashes to ${actual}`);
      return out;
    } finally {
      await handle.close();
    }
  }

  /** How the blob is stored; null if absent. */
  async encryption(sha256: string): Promise<BlobEncryption | null> {
    let handle: FileHandle;
    try {
      handle = await open(this.path(sha256), 'r');
    } catch (e) {
      if (isNoEnt(e)) return null;
      throw e;
    }
    try {
      const header = await readHeader(handle, (await handle.stat()).size);
      return header ? { encrypted: true, keyId: header.keyId } : { encrypted: false };
    } finally {
      await handle.close();
    }
  }

  async exists(sha256: string): Promise<boolean> {
    try {
      return (await stat(this.path(sha256))).isFile();
    } catch (e) {
      if (isNoEnt(e)) return false;
      throw e;
    }
  }

  /** True if the blob exists and its content hashes to its name. */
  async verify(sha256: string): Promise<boolean> {
    return (await this.check(sha256)).ok;
  }

  /**
   * Like verify, with the reason when it fails. `expectedSize` (from the registry row: the plain size)
   * catches a truncated file without reading it. An encrypted blob is decrypted (not kept) and its
   * plain content hashed; without its key the result is { ok: false, keyMissing: true }.
   */
  async check(sha256: string, expectedSize?: number): Promise<BlobCheck> {
    const p = this.path(sha256);
    try {
      const st = await stat(p);
      if (!st.isFile()) return { ok: false, reason: 'blob is not a regular file' };
    } catch (e) {
      if (isNoEnt(e)) return { ok: false, reason: 'blob file is missing' };
      throw e;
    }
    let handle: FileHandle;
    try {
      handle = await open(p, 'r');
    } catch (e) {
      if (isNoEnt(e)) return { ok: false, reason: 'blob file is missing' }; // removed since the stat
      throw e;
    }
    try {
      const { size } = await handle.stat();
      const header = await readHeader(handle, size);
      if (!header) {
        if (expectedSize !== undefined && size !== expectedSize) {
          return { ok: false, reason: `blob is ${size} bytes, expected ${expectedSize}` };
        }
        const actual = await hashRange(handle, 0, size);
        return actual === sha256
          ? { ok: true }
          : { ok: false, reason: `blob content hashes to ${actual}, expected ${sha256}` };
      }
      if (size < ENCRYPTION_OVERHEAD) return { ok: false, reason: 'encrypted blob is truncated' };
      if (expectedSize !== undefined && size !== expectedSize + ENCRYPTION_OVERHEAD) {
        return {
          ok: false,
          reason:
            `encrypted blob is ${size} bytes, expected ${expectedSize + ENCRYPTION_OVERHEAD} ` +
            `(${expectedSize} plus ${ENCRYPTION_OVERHEAD} of header and tag)`,
        };
      }
      const key = this.keys.find((k) => k.id === header.keyId);
      if (!key) return { ok: false, reason: keyMismatch(sha256, header.keyId, this.keys).message, keyMissing: true };
      const hash = createHash('sha256');
      if (!(await decryptFile(handle, size, header, key, (plain) => hash.update(plain)))) {
        return { ok: false, reason: 'encrypted blob fails authentication (damaged or tampered with)' };
      }
      const actual = hash.digest('hex');
      return actual === sha256
        ? { ok: true }
        : { ok: false, reason: `blob content hashes to ${actual}, expected ${sha256}` };
    } finally {
      await handle.close();
    }
  }

  /** Removes a blob; absent is fine. The caller checks that no version references it any more. */
  async remove(sha256: string): Promise<void> {
    const p = this.path(sha256);
    try {
      await unlink(p);
    } catch (e) {
      if (isNoEnt(e)) return;
      throw e;
    }
    await fsyncDir(this.blobDir);
  }

  /** Hashes of all blobs on disk (names that are not hashes are ignored). */
  async list(): Promise<string[]> {
    return (await readdir(this.blobDir)).filter((n) => SHA256.test(n)).sort();
  }

  /**
   * Deletes everything in tmp/: uploads cut short by a crash. Only safe at start-up, before any
   * upload of this process begins. Returns how many entries were removed.
   */
  async sweepTemp(): Promise<number> {
    const names = await readdir(this.tmpDir);
    for (const n of names) await rm(join(this.tmpDir, n), { recursive: true, force: true });
    return names.length;
  }
}

/** write() may write less than asked; loops until all of `data` is written. */
async function writeAll(handle: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.byteLength) {
    const { bytesWritten } = await handle.write(data, off, data.byteLength - off);
    off += bytesWritten;
  }
}

/** Fills `buf` from `position`; a file shorter than that is an error (blobs never shrink in place). */
async function readExactly(handle: FileHandle, buf: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await handle.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) throw new SightlineError('INTERNAL', 'blob file ended early while being read');
    off += bytesRead;
  }
}

/** The encryption header, or null for a plain blob. */
async function readHeader(handle: FileHandle, size: number): Promise<EncHeader | null> {
  const head = Buffer.alloc(Math.min(size, HEADER_BYTES));
  await readExactly(handle, head, 0);
  if (!isEncryptedHead(head)) return null;
  // Magic but too short for a header: still "encrypted" (a truncated one), never plain.
  return parseHeader(head) ?? { keyId: 'unknown', iv: Buffer.alloc(0), raw: head };
}

/**
 * Decrypts an encrypted blob file in chunks into `sink`. Returns false if authentication fails at the
 * end: the caller must not use anything the sink received before this returns true.
 */
async function decryptFile(
  handle: FileHandle,
  size: number,
  header: EncHeader,
  key: BlobKey,
  sink: (plain: Buffer) => void,
): Promise<boolean> {
  const tag = Buffer.alloc(TAG_BYTES);
  await readExactly(handle, tag, size - TAG_BYTES);
  const decipher = blobDecipher(key, header, tag);
  const end = size - TAG_BYTES;
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(1, end - HEADER_BYTES)));
  for (let pos = HEADER_BYTES; pos < end;) {
    const n = Math.min(buf.length, end - pos);
    const piece = buf.subarray(0, n);
    await readExactly(handle, piece, pos);
    sink(decipher.update(piece));
    pos += n;
  }
  let last: Buffer;
  try {
    last = decipher.final();
  } catch {
    return false; // "Unsupported state or unable to authenticate data"
  }
  sink(last);
  return true;
}

/** sha256 of bytes [start, end) of an open file. */
async function hashRange(handle: FileHandle, start: number, end: number): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(1, end - start)));
  for (let pos = start; pos < end;) {
    const piece = buf.subarray(0, Math.min(buf.length, end - pos));
    await readExactly(handle, piece, pos);
    hash.update(piece);
    pos += piece.length;
  }
  return hash.digest('hex');
}

/** Makes a rename or unlink in `dir` durable: without it the entry can vanish after power loss. */
async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

function isNoEnt(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ENOENT';
}
