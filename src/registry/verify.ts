/**
 * Start-up checks that tie the rows to the files: every version's blob must exist and hash to its
 * sha256. Run before serving, so a damaged model is refused at promote/load instead of mid-request.
 */
import { SightlineError } from '../errors.js';
import type { BlobStore } from './blobs.js';
import type { RegistryStore } from './store.js';

export interface CorruptVersion {
  readonly model: string;
  readonly version: number;
  readonly reason: string;
}

export interface VerifyResult {
  /** Versions looked at. */
  readonly checked: number;
  /** Versions whose blob is missing or damaged (now marked corrupt, or still corrupt). */
  readonly corrupt: CorruptVersion[];
  /** Previously corrupt versions whose blob is sound again (now marked ok). */
  readonly repaired: { readonly model: string; readonly version: number }[];
  /**
   * Versions whose blob is encrypted with a key the BlobStore was not given: not marked corrupt (the
   * file may be fine). Present only with `allowLocked`; without it verifyBlobs throws instead.
   */
  readonly locked?: CorruptVersion[];
}

export interface VerifyOptions {
  /**
   * Report blobs encrypted with a key the store lacks in `locked` instead of throwing PRECONDITION.
   * The server leaves it false: a wrong or missing key must stop start-up with a clear error.
   */
  readonly allowLocked?: boolean;
}

/**
 * Verifies every version's blob and brings each version's state in line: a missing or damaged blob
 * marks the version corrupt, a sound blob clears an earlier corrupt mark. Each distinct blob is
 * hashed once, however many versions share it.
 */
export async function verifyBlobs(
  store: RegistryStore,
  blobs: BlobStore,
  opts: VerifyOptions = {},
): Promise<VerifyResult> {
  const versions = store.allVersions();
  const seen = new Map<string, Awaited<ReturnType<BlobStore['check']>>>();
  const corrupt: CorruptVersion[] = [];
  const repaired: { model: string; version: number }[] = [];
  const locked: CorruptVersion[] = [];
  for (const v of versions) {
    const key = `${v.sha256}:${v.sizeBytes}`;
    let result = seen.get(key);
    if (!result) {
      result = await blobs.check(v.sha256, v.sizeBytes);
      seen.set(key, result);
    }
    if (!result.ok && result.keyMissing) {
      locked.push({ model: v.model, version: v.version, reason: result.reason });
    } else if (result.ok) {
      if (v.state === 'corrupt') {
        store.markOk(v.model, v.version);
        repaired.push({ model: v.model, version: v.version });
      }
    } else {
      if (v.state !== 'corrupt' || v.corruptReason !== result.reason)
        store.markCorrupt(v.model, v.version, result.reason);
      corrupt.push({ model: v.model, version: v.version, reason: result.reason });
    }
  }
  if (locked.length > 0 && !opts.allowLocked) {
    const shown = locked
      .slice(0, 5)
      .map((l) => `${l.model} v${l.version}`)
      .join(', ');
    throw new SightlineError(
      'PRECONDITION',
      `${locked[0].reason}: ${locked.length} version(s) cannot be read ` +
        `(${shown}${locked.length > 5 ? ', …' : ''}); configure the key they were ` +
        `encrypted with (or keep it as a previous key until a rotation finishes)`,
      { locked },
    );
  }
  return opts.allowLocked
    ? { checked: versions.length, corrupt, repaired, locked }
    : { checked: versions.length, corrupt, repaired };
}

/**
 * Removes blobs no version references: left by a crash between deleting a row and removing its file,
 * or between storing an upload and inserting its row. Only safe at start-up, before uploads begin.
 * Returns the removed hashes.
 */
export async function sweepOrphanBlobs(store: RegistryStore, blobs: BlobStore): Promise<string[]> {
  const removed: string[] = [];
  for (const sha of await blobs.list()) {
    if (!store.isBlobReferenced(sha)) {
      await blobs.remove(sha);
      removed.push(sha);
    }
  }
  return removed;
}
