/**
 * The model registry: versions of ONNX files by content hash, active/rollback pointers with an
 * append-only history, and drift profiles; bearer tokens (tokens.ts), the hash-chained audit log
 * (audit.ts) and blob encryption at rest (crypto.ts, rotate.ts). Pure storage: no gRPC, no
 * inference. The only public entry of src/registry/.
 */
export { BlobStore, assertSha256 } from './blobs.js';
export type { BlobCheck, BlobEncryption, BlobStoreOptions, PutOptions, PutResult } from './blobs.js';
export { AuditLog, GENESIS_HASH, auditEntryHash, parseSince, verifyAuditChain } from './audit.js';
export type { AuditEntry, AuditHead, AuditInput, AuditListOptions, AuditOutcome, AuditVerifyResult } from './audit.js';
export { ENCRYPTION_OVERHEAD, blobKey, generateKey, keyId, loadKey, parseKey } from './crypto.js';
export type { BlobKey, KeySource } from './crypto.js';
export { decryptAllBlobs, rotateBlobKey } from './rotate.js';
export type { RotateEvent, RotateOptions, RotateResult } from './rotate.js';
export {
  CAPABILITIES,
  TOKEN_ROLES,
  ROLE_GRANTS,
  TokenMirror,
  TokenStore,
  hashTokenSecret,
  isTokenRole,
  roleAllows,
  verifyToken,
} from './tokens.js';
export type {
  AuthFailure,
  AuthResult,
  Capability,
  NewToken,
  Principal,
  TokenDigest,
  TokenRole,
  TokenRecord,
  TokenStoreOptions,
} from './tokens.js';
export { OWNER_FILE, lockDataDir } from './lock.js';
export type { DataDirLock, LockOwner } from './lock.js';
export { BUSY_TIMEOUT_MS, defaultMigrationsDir, migrate, readMigrations } from './migrate.js';
export type { MigrateResult, MigrationFile } from './migrate.js';
export { EvidenceStore } from './evidence.js';
export type {
  DatasetFile,
  DatasetRecord,
  EvaluationRecord,
  NewDataset,
  NewTrial,
  TrialKind,
  TrialOutcome,
  TrialRecord,
} from './evidence.js';
export { RegistryStore } from './store.js';
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
  VersionIntegrity,
} from './store.js';
export { sweepOrphanBlobs, verifyBlobs } from './verify.js';
export type { CorruptVersion, VerifyOptions, VerifyResult } from './verify.js';
