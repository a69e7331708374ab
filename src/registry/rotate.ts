/**
 * Key rotation: re-encrypts every blob under a new key (or, with `to: null`, stores them all in the
 * clear again). One blob at a time, each through BlobStore.putStream (tmp → fsync → sha256 check →
 * rename → fsync dir), so at every instant each blob file is whole under the old key or the new one.
 * The file header names its key, so a rotation cut short is resumed by running it again: blobs already
 * under the new key are skipped.
 *
 * Run it with the server stopped, or with the server given the old key as a previous key
 * (`encryption.previousKeyFiles`; it would otherwise fail to read the blobs already rotated). A blob deleted while a rotation rewrites it may be
 * written back; the start-up orphan sweep removes it.
 */
import { SightlineError } from '../errors.js';
import { BlobStore } from './blobs.js';
import { blobKey } from './crypto.js';

export interface RotateOptions {
  /** The key blobs are encrypted with now; null if they are all in the clear (first encryption). */
  readonly from: Buffer | null;
  /** The key to encrypt with; null decrypts everything (turns encryption off). */
  readonly to: Buffer | null;
  /** Called after each blob is handled (progress output; tests use it to simulate a crash). */
  readonly onBlob?: (e: RotateEvent) => void | Promise<void>;
}

export interface RotateEvent {
  readonly sha256: string;
  readonly outcome: 'rotated' | 'skipped' | 'failed';
  /** 1-based position and total, for progress output. */
  readonly index: number;
  readonly total: number;
}

export interface RotateResult {
  readonly total: number;
  /** Rewritten under the new key (or in the clear). */
  readonly rotated: number;
  /** Already under the new key (or already in the clear): left alone. */
  readonly skipped: number;
  /** Not rewritten, and why: a key neither given, or a damaged blob (never re-encrypted, which would hide the damage). */
  readonly failed: { readonly sha256: string; readonly reason: string }[];
}

/** Re-encrypts every blob in `dataDir` from `from` to `to`; idempotent and resumable (see the file comment). */
export async function rotateBlobKey(dataDir: string, opts: RotateOptions): Promise<RotateResult> {
  const target = opts.to ? blobKey(opts.to).id : null;
  // The reader knows both keys, so a blob already rewritten reads fine if the list is stale.
  const reader = new BlobStore(dataDir, { key: opts.from, previousKeys: opts.to ? [opts.to] : [] });
  const writer = new BlobStore(dataDir, { key: opts.to });
  const all = await reader.list();
  let rotated = 0;
  let skipped = 0;
  const failed: { sha256: string; reason: string }[] = [];
  for (const [i, sha256] of all.entries()) {
    let outcome: RotateEvent['outcome'];
    const enc = await reader.encryption(sha256);
    if (enc === null || (enc.encrypted ? enc.keyId === target : target === null)) {
      outcome = 'skipped'; // gone since the listing, or done by an earlier run
      skipped++;
    } else {
      try {
        const plain = await reader.read(sha256);
        // read() refuses a damaged file, so its damage never becomes a valid-looking ciphertext.
        await writer.putStream(once(plain), { maxBytes: plain.byteLength });
        outcome = 'rotated';
        rotated++;
      } catch (e) {
        if (!(e instanceof SightlineError)) throw e; // I/O failure: stop; running again resumes
        outcome = 'failed';
        failed.push({ sha256, reason: e.message });
      }
    }
    await opts.onBlob?.({ sha256, outcome, index: i + 1, total: all.length });
  }
  return { total: all.length, rotated, skipped, failed };
}

/** Turns encryption off: every blob encrypted with `key` is stored in the clear again. */
export function decryptAllBlobs(dataDir: string, key: Buffer): Promise<RotateResult> {
  return rotateBlobKey(dataDir, { from: key, to: null });
}

async function* once(b: Uint8Array): AsyncGenerator<Uint8Array> {
  yield b;
}
