/**
 * Start-up checks that tie the rows to the files: every version's blob must exist and hash to its
 * sha256. Run before serving, so a damaged model is refused at promote/load instead of mid-request.
 */
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
}

/**
 * Verifies every version's blob and brings each version's state in line: a missing or damaged blob
 * marks the version corrupt, a sound blob clears an earlier corrupt mark. Each distinct blob is
 * hashed once, however many versions share it.
 */
export async function verifyBlobs(store: RegistryStore, blobs: BlobStore): Promise<VerifyResult> {
  const versions = store.allVersions();
  const seen = new Map<string, Awaited<ReturnType<BlobStore['check']>>>();
  const corrupt: CorruptVersion[] = [];
  const repaired: { model: string; version: number }[] = [];
  for (const v of versions) {
    const key = `${v.sha256}:${v.sizeBytes}`;
    let result = seen.get(key);
    if (!result) {
      result = await blobs.check(v.sha256, v.sizeBytes);
      seen.set(key, result);
    }
    if (result.ok) {
      if (v.state === 'corrupt') {
        store.markOk(v.model, v.version);
        repaired.push({ model: v.model, version: v.version });
      }
    } else {
      if (v.state !== 'corrupt' || v.corruptReason !== result.reason) store.markCorrupt(v.model, v.version, result.reason);
      corrupt.push({ model: v.model, version: v.version, reason: result.reason });
    }
  }
  return { checked: versions.length, corrupt, repaired };
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
