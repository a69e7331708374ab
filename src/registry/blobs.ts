/**
 * Content-addressed model files: `<dataDir>/blobs/sha256/<hash>`. An upload is written to
 * `<dataDir>/tmp/`, hashed while streaming, fsynced, checked, then renamed into place and the directory
 * fsynced, so a blob path either does not exist or holds complete, durable bytes. The caller inserts
 * the registry row only after putStream resolves (a crash never leaves a row without its file).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync } from 'node:fs';
import { chmod, open, readFile, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SightlineError } from '../errors.js';

const SHA256 = /^[0-9a-f]{64}$/;

/** Throws INVALID_INPUT unless `s` is 64 lowercase hex digits; every path built from a hash goes through here. */
export function assertSha256(s: unknown, what = 'sha256'): asserts s is string {
  if (typeof s !== 'string' || !SHA256.test(s)) {
    const shown = typeof s === 'string' ? JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s) : typeof s;
    throw new SightlineError('INVALID_INPUT', `${what} ${shown} is not a sha256 (64 lowercase hex digits)`, { field: what });
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

/** Why a blob is unusable, in words safe to show a client (no filesystem paths). */
export type BlobCheck = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export class BlobStore {
  readonly blobDir: string;
  readonly tmpDir: string;

  constructor(readonly dataDir: string) {
    this.blobDir = join(dataDir, 'blobs', 'sha256');
    this.tmpDir = join(dataDir, 'tmp');
    mkdirSync(this.blobDir, { recursive: true });
    mkdirSync(this.tmpDir, { recursive: true });
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
      let size = 0;
      for await (const chunk of chunks) {
        size += chunk.byteLength;
        if (size > maxBytes) {
          // Throwing inside for-await also calls the source's return(), so the client stream stops.
          throw new SightlineError('INVALID_INPUT', `model file exceeds the upload limit of ${maxBytes} bytes`, { maxBytes });
        }
        hash.update(chunk);
        // write() may write less than asked; loop until the chunk is fully on disk.
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await handle.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      }
      await handle.sync();
      await handle.close();
      closed = true;

      const sha256 = hash.digest('hex');
      if (expected !== undefined && expected !== sha256) {
        throw new SightlineError('INVALID_INPUT', `sha256 mismatch: expected ${expected}, got ${sha256}`, { expected, actual: sha256 });
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

  /** Whole blob in memory. NOT_FOUND if absent. */
  async read(sha256: string): Promise<Buffer> {
    const p = this.path(sha256);
    try {
      return await readFile(p);
    } catch (e) {
      if (isNoEnt(e)) throw new SightlineError('NOT_FOUND', `blob ${sha256} is missing`, { sha256 });
      throw e;
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
   * Like verify, with the reason when it fails. `expectedSize` (from the registry row) catches a
   * truncated file without reading it.
   */
  async check(sha256: string, expectedSize?: number): Promise<BlobCheck> {
    const p = this.path(sha256);
    let size: number;
    try {
      const st = await stat(p);
      if (!st.isFile()) return { ok: false, reason: 'blob is not a regular file' };
      size = st.size;
    } catch (e) {
      if (isNoEnt(e)) return { ok: false, reason: 'blob file is missing' };
      throw e;
    }
    if (expectedSize !== undefined && size !== expectedSize) {
      return { ok: false, reason: `blob is ${size} bytes, expected ${expectedSize}` };
    }
    let actual: string;
    try {
      actual = await hashFile(p);
    } catch (e) {
      if (isNoEnt(e)) return { ok: false, reason: 'blob file is missing' }; // removed since the stat
      throw e;
    }
    return actual === sha256 ? { ok: true } : { ok: false, reason: `blob content hashes to ${actual}, expected ${sha256}` };
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

async function hashFile(p: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(p)) hash.update(chunk as Buffer);
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
