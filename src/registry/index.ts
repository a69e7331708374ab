/**
 * The model registry: versions of ONNX files by content hash, active/rollback pointers with an
 * append-only history, and drift profiles. Pure storage: no gRPC, no inference. The only public entry
 * of src/registry/.
 */
export { BlobStore, assertSha256 } from './blobs.js';
export type { BlobCheck, PutOptions, PutResult } from './blobs.js';
export { BUSY_TIMEOUT_MS, defaultMigrationsDir, migrate, readMigrations } from './migrate.js';
export type { MigrateResult, MigrationFile } from './migrate.js';
export { RegistryStore, isValidModelName } from './store.js';
export type {
  DeleteResult,
  HistoryAction,
  HistoryRecord,
  ModelRecord,
  NewVersion,
  OpenOptions,
  PointerChange,
  ProfileRecord,
  VersionRecord,
  VersionState,
} from './store.js';
export { sweepOrphanBlobs, verifyBlobs } from './verify.js';
export type { CorruptVersion, VerifyResult } from './verify.js';
