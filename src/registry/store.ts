/**
 * The registry's rows: models, versions, pointer history and drift profiles, over better-sqlite3.
 * Synchronous, prepared statements, one IMMEDIATE transaction per mutation; returns plain records.
 * Knows nothing of blobs on disk (see blobs.ts) nor of inference.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SightlineError } from '../errors.js';
import { assertIdentifier } from '../identifiers.js';
import { assertSha256 } from './blobs.js';
import { lockDataDir, type DataDirLock } from './lock.js';
import { migrate } from './migrate.js';

export type VersionIntegrity = 'ok' | 'corrupt';
export type HistoryAction = 'promote' | 'rollback' | 'delete';

export interface ModelRecord {
  readonly name: string;
  readonly createdAt: string;
  readonly activeVersion: number | null;
  /** What rollback() returns to: the version that was active before the current one. */
  readonly rollbackVersion: number | null;
  /** The number the next upload gets; never goes down, so numbers are never reused. */
  readonly nextVersion: number;
  readonly versionCount: number;
}

export interface VersionRecord {
  readonly model: string;
  readonly version: number;
  readonly sha256: string;
  readonly sizeBytes: number;
  /** The uploaded file's name, for people; never used as a path. */
  readonly sourceName: string | null;
  readonly createdAt: string;
  readonly family: string;
  readonly inputWidth: number;
  readonly inputHeight: number;
  readonly classNames: readonly string[];
  readonly onnxMetadata: Readonly<Record<string, string>>;
  readonly notes: string;
  readonly state: VersionIntegrity;
  readonly corruptReason: string | null;
}

export interface NewVersion {
  readonly model: string;
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly sourceName?: string | null;
  readonly family: string;
  readonly inputWidth: number;
  readonly inputHeight: number;
  readonly classNames: readonly string[];
  readonly onnxMetadata: Readonly<Record<string, string>>;
  readonly notes?: string;
}

/**
 * promote: from = previous active (null if none), to = new active. rollback: from = active before,
 * to = active after. delete: from = the deleted version, to = null.
 */
export interface HistoryRecord {
  readonly id: number;
  readonly model: string;
  readonly at: string;
  readonly actor: string;
  readonly action: HistoryAction;
  readonly fromVersion: number | null;
  readonly toVersion: number | null;
  readonly reason: string;
}

export interface ProfileRecord {
  readonly model: string;
  readonly version: number;
  readonly kind: string;
  readonly createdAt: string;
  readonly body: unknown;
}

export interface PointerChange {
  readonly from: number | null;
  readonly to: number;
}

export interface DeleteResult {
  readonly sha256: string;
  /** True if another version (of any model) still uses the blob: then the caller must keep the file. */
  readonly blobStillReferenced: boolean;
}

export interface OpenOptions {
  /** Clock for timestamps; tests inject one. */
  readonly now?: () => Date;
  /**
   * Hold the data directory's server lock (lock.ts) until close(): a server does, so a second server
   * on the same directory is refused. The admin commands (tokens, audit, key rotation) do not: they
   * work beside a running server, each change in its own transaction.
   */
  readonly lock?: boolean;
}

const MAX_ACTOR = 256;
const MAX_REASON = 4096;
const MAX_NOTES = 16 * 1024;
const MAX_SOURCE_NAME = 1024;
const MAX_FAMILY = 64;
const DEFAULT_HISTORY_LIMIT = 100;
const MAX_HISTORY_LIMIT = 10_000;

interface ModelRow {
  name: string;
  created_at: string;
  active_version: number | null;
  rollback_version: number | null;
  next_version: number;
  version_count: number;
}

interface VersionRow {
  model: string;
  version: number;
  sha256: string;
  size_bytes: number;
  source_name: string | null;
  created_at: string;
  family: string;
  input_width: number;
  input_height: number;
  class_names: string;
  onnx_metadata: string;
  notes: string;
  state: VersionIntegrity;
  corrupt_reason: string | null;
}

interface HistoryRow {
  id: number;
  model: string;
  at: string;
  actor: string;
  action: HistoryAction;
  from_version: number | null;
  to_version: number | null;
  reason: string;
}

interface ProfileRow {
  model: string;
  version: number;
  kind: string;
  created_at: string;
  body: string;
}

const MODEL_COLUMNS = `m.name AS name, m.created_at AS created_at, m.active_version AS active_version,
  m.rollback_version AS rollback_version, m.next_version AS next_version,
  (SELECT count(*) FROM versions v WHERE v.model = m.name) AS version_count`;

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Database.Database) {
  const p = <P extends unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
  return {
    model: p<[string], ModelRow>(`SELECT ${MODEL_COLUMNS} FROM models m WHERE m.name = ?`),
    models: p<[], ModelRow>(`SELECT ${MODEL_COLUMNS} FROM models m ORDER BY m.name`),
    version: p<[string, number], VersionRow>('SELECT * FROM versions WHERE model = ? AND version = ?'),
    versions: p<[string], VersionRow>('SELECT * FROM versions WHERE model = ? ORDER BY version'),
    allVersions: p<[], VersionRow>('SELECT * FROM versions ORDER BY model, version'),
    versionBySha: p<[string, string], VersionRow>('SELECT * FROM versions WHERE model = ? AND sha256 = ?'),
    // Model versions and golden dataset files share the blob store.
    shaUsed: p<[{ sha: string }], { n: number }>(
      'SELECT (SELECT count(*) FROM versions WHERE sha256 = @sha) ' +
        '+ (SELECT count(*) FROM dataset_files WHERE sha256 = @sha) AS n',
    ),
    openTrialOf: p<[string, number], { kind: string }>(
      'SELECT kind FROM trials WHERE model = ? AND version = ? AND ended_at IS NULL LIMIT 1',
    ),
    createModel: p<[string, string]>(
      'INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING',
    ),
    allocateVersion: p<[string], { version: number }>(
      'UPDATE models SET next_version = next_version + 1 WHERE name = ? RETURNING next_version - 1 AS version',
    ),
    insertVersion: p<[VersionRow]>(
      `INSERT INTO versions (model, version, sha256, size_bytes, source_name, created_at, family, input_width,
         input_height, class_names, onnx_metadata, notes, state, corrupt_reason)
       VALUES (@model, @version, @sha256, @size_bytes, @source_name, @created_at, @family, @input_width,
         @input_height, @class_names, @onnx_metadata, @notes, @state, @corrupt_reason)`,
    ),
    deleteVersion: p<[string, number]>('DELETE FROM versions WHERE model = ? AND version = ?'),
    setPointers: p<[number | null, number | null, string]>(
      'UPDATE models SET active_version = ?, rollback_version = ? WHERE name = ?',
    ),
    setState: p<[VersionIntegrity, string | null, string, number]>(
      'UPDATE versions SET state = ?, corrupt_reason = ? WHERE model = ? AND version = ?',
    ),
    appendHistory: p<[string, string, string, HistoryAction, number | null, number | null, string]>(
      `INSERT INTO pointer_history (model, at, actor, action, from_version, to_version, reason)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    history: p<[string, number], HistoryRow>('SELECT * FROM pointer_history WHERE model = ? ORDER BY id DESC LIMIT ?'),
    putProfile: p<[string, number, string, string, string]>(
      `INSERT INTO profiles (model, version, kind, created_at, body) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (model, version, kind) DO UPDATE SET created_at = excluded.created_at, body = excluded.body`,
    ),
    profile: p<[string, number, string], ProfileRow>(
      'SELECT * FROM profiles WHERE model = ? AND version = ? AND kind = ?',
    ),
  };
}

export class RegistryStore {
  private readonly now: () => Date;
  private readonly s: Statements;

  private constructor(
    private readonly db: Database.Database,
    private readonly lock: DataDirLock | null,
    opts: OpenOptions,
  ) {
    this.now = opts.now ?? (() => new Date());
    this.s = prepareStatements(db);
  }

  /**
   * Opens (creating if needed) `<dataDir>/registry.db` and migrates it. Throws PRECONDITION for a
   * database written by a newer build.
   */
  static open(dataDir: string, migrationsDir: string, opts: OpenOptions = {}): RegistryStore {
    mkdirSync(dataDir, { recursive: true });
    const lock = opts.lock ? lockDataDir(dataDir) : null;
    const file = join(dataDir, 'registry.db');
    let db: Database.Database | undefined;
    try {
      db = new Database(file);
      migrate(db, migrationsDir);
      return new RegistryStore(db, lock, opts);
    } catch (e) {
      db?.close();
      lock?.release();
      if (e instanceof SightlineError) throw e;
      // Not a database, unreadable, locked …: say which file, for the operator.
      throw new SightlineError(
        'INTERNAL',
        `cannot open the registry database ${file}: ${(e as Error).message}`,
        { file },
        { cause: e },
      );
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
    this.lock?.release();
  }

  /** The migrated connection, for the other stores over the same file (tokens.ts, audit.ts). */
  get database(): Database.Database {
    return this.db;
  }

  /** Problems SQLite finds in the file and its foreign keys; empty when healthy. */
  integrityCheck(): string[] {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    const problems = rows.map((r) => r.integrity_check).filter((m) => m !== 'ok');
    const fk = this.db.pragma('foreign_key_check') as { table: string; rowid: number; parent: string }[];
    for (const v of fk) problems.push(`foreign key violation: ${v.table} row ${v.rowid} → ${v.parent}`);
    return problems;
  }

  // ---- reads ----

  listModels(): ModelRecord[] {
    return this.s.models.all().map(toModel);
  }

  getModel(name: string): ModelRecord | undefined {
    assertIdentifier(name);
    const row = this.s.model.get(name);
    return row && toModel(row);
  }

  /** Versions of a model, oldest first. NOT_FOUND for an unknown model. */
  listVersions(name: string): VersionRecord[] {
    this.requireModel(name);
    return this.s.versions.all(name).map(toVersion);
  }

  getVersion(name: string, version: number): VersionRecord | undefined {
    assertIdentifier(name);
    assertVersionNumber(version);
    const row = this.s.version.get(name, version);
    return row && toVersion(row);
  }

  /** The version of `model` whose file has this content, if any: a re-upload returns it instead of a new one. */
  findVersionBySha(model: string, sha256: string): VersionRecord | undefined {
    assertIdentifier(model);
    assertSha256(sha256);
    const row = this.s.versionBySha.get(model, sha256);
    return row && toVersion(row);
  }

  /** Every version of every model, for start-up verification. */
  allVersions(): VersionRecord[] {
    return this.s.allVersions.all().map(toVersion);
  }

  /** Whether any version of any model, or any golden dataset file, uses this blob. */
  isBlobReferenced(sha256: string): boolean {
    assertSha256(sha256);
    return (this.s.shaUsed.get({ sha: sha256 })?.n ?? 0) > 0;
  }

  /** Pointer history of a model, newest first. NOT_FOUND for an unknown model. */
  history(model: string, limit: number = DEFAULT_HISTORY_LIMIT): HistoryRecord[] {
    this.requireModel(model);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_HISTORY_LIMIT) {
      throw new SightlineError(
        'INVALID_INPUT',
        `history limit must be an integer from 1 to ${MAX_HISTORY_LIMIT}, got ${limit}`,
        { limit },
      );
    }
    return this.s.history.all(model, limit).map(toHistory);
  }

  getProfile(model: string, version: number, kind: string): ProfileRecord | undefined {
    assertIdentifier(model);
    assertVersionNumber(version);
    assertIdentifier(kind, 'profile kind');
    const row = this.s.profile.get(model, version, kind);
    return row && toProfile(row);
  }

  // ---- mutations ----

  /**
   * Records a new version (its blob must already be durable in the BlobStore) and returns it with its
   * server-assigned number. Creates the model on its first version. ALREADY_EXISTS (fields.version)
   * if this model already has a version with this sha256: call findVersionBySha first for idempotence.
   */
  insertVersion(v: NewVersion): VersionRecord {
    const row = this.validateNewVersion(v);
    return this.tx(() => {
      const existing = this.s.versionBySha.get(v.model, v.sha256);
      if (existing) {
        throw new SightlineError(
          'ALREADY_EXISTS',
          `model "${v.model}" already has this file as version ${existing.version}`,
          {
            model: v.model,
            version: existing.version,
            sha256: v.sha256,
          },
        );
      }
      this.s.createModel.run(v.model, row.created_at);
      const allocated = this.s.allocateVersion.get(v.model);
      if (!allocated) throw new SightlineError('INTERNAL', `model "${v.model}" vanished while inserting a version`);
      const full: VersionRow = { ...row, version: allocated.version };
      this.s.insertVersion.run(full);
      return toVersion(full);
    });
  }

  /**
   * Makes `version` the active one; the previous active becomes the rollback target. The version must
   * exist (NOT_FOUND) and not be marked corrupt (PRECONDITION). Promoting the version that is already
   * active changes nothing, writes no history and returns { from: version, to: version }, so a retried
   * promote is harmless.
   */
  promote(model: string, version: number, actor: string, reason: string): PointerChange {
    assertVersionNumber(version);
    assertAudit(actor, reason);
    return this.tx(() => {
      const m = this.requireModel(model);
      const v = this.s.version.get(model, version);
      if (!v) {
        throw new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
      }
      if (v.state !== 'ok') {
        throw new SightlineError(
          'PRECONDITION',
          `cannot promote ${model} v${version}: it is marked corrupt ` +
            `(${v.corrupt_reason ?? 'no reason recorded'}); re-upload the file or promote another ` +
            `version`,
          { model, version, corruptReason: v.corrupt_reason },
        );
      }
      if (m.activeVersion === version) return { from: version, to: version };
      // With nothing active there is nothing to return to, and by the schema no rollback target either.
      const rollbackTo = m.activeVersion ?? m.rollbackVersion;
      this.s.setPointers.run(version, rollbackTo, model);
      this.s.appendHistory.run(model, this.stamp(), actor, 'promote', m.activeVersion, version, reason);
      return { from: m.activeVersion, to: version };
    });
  }

  /**
   * Swaps the active version and the rollback target, so a second rollback undoes the first.
   * PRECONDITION if there is no rollback target or it is marked corrupt.
   */
  rollback(model: string, actor: string, reason: string): PointerChange {
    assertAudit(actor, reason);
    return this.tx(() => {
      const m = this.requireModel(model);
      if (m.activeVersion === null) {
        throw new SightlineError('PRECONDITION', `cannot roll back ${model}: no version has been promoted yet`, {
          model,
        });
      }
      if (m.rollbackVersion === null) {
        throw new SightlineError(
          'PRECONDITION',
          `cannot roll back ${model}: there is no rollback target (v${m.activeVersion} is active and nothing was active before it)`,
          { model, activeVersion: m.activeVersion },
        );
      }
      const target = this.s.version.get(model, m.rollbackVersion);
      if (target && target.state !== 'ok') {
        throw new SightlineError(
          'PRECONDITION',
          `cannot roll back ${model} to v${m.rollbackVersion}: it is marked corrupt ` +
            `(${target.corrupt_reason ?? 'no reason recorded'}); promote another version instead`,
          { model, version: m.rollbackVersion, corruptReason: target.corrupt_reason },
        );
      }
      this.s.setPointers.run(m.rollbackVersion, m.activeVersion, model);
      this.s.appendHistory.run(model, this.stamp(), actor, 'rollback', m.activeVersion, m.rollbackVersion, reason);
      return { from: m.activeVersion, to: m.rollbackVersion };
    });
  }

  /**
   * Deletes a version's row (and its profiles and evaluations). Refuses the active version, the rollback
   * target and the candidate of a running shadow or canary.
   * The model row stays, so the number is never reused. The blob is the caller's to remove, only if
   * blobStillReferenced is false; check isBlobReferenced again right before removing if uploads run
   * concurrently (an upload of the same bytes may have landed in between).
   */
  deleteVersion(model: string, version: number, actor: string, reason: string): DeleteResult {
    assertVersionNumber(version);
    assertAudit(actor, reason);
    return this.tx(() => {
      const m = this.requireModel(model);
      const v = this.s.version.get(model, version);
      if (!v) throw new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
      if (m.activeVersion === version) {
        throw new SightlineError(
          'PRECONDITION',
          `cannot delete ${model} v${version}: it is the active version; promote another version first`,
          { model, version, pointer: 'active' },
        );
      }
      if (m.rollbackVersion === version) {
        throw new SightlineError(
          'PRECONDITION',
          `cannot delete ${model} v${version}: it is the rollback target; promote another version first so it is no longer the one a rollback returns to`,
          { model, version, pointer: 'rollback' },
        );
      }
      const trial = this.s.openTrialOf.get(model, version);
      if (trial) {
        throw new SightlineError(
          'PRECONDITION',
          `cannot delete ${model} v${version}: it is the candidate of a running ${trial.kind}; stop it first`,
          { model, version, trial: trial.kind },
        );
      }
      this.s.deleteVersion.run(model, version);
      this.s.appendHistory.run(model, this.stamp(), actor, 'delete', version, null, reason);
      return { sha256: v.sha256, blobStillReferenced: (this.s.shaUsed.get({ sha: v.sha256 })?.n ?? 0) > 0 };
    });
  }

  /** Marks a version unusable (its blob is missing or damaged). NOT_FOUND if absent. */
  markCorrupt(model: string, version: number, reason: string): void {
    assertVersionNumber(version);
    assertText(reason, 'reason', MAX_REASON);
    if (reason === '') throw new SightlineError('INVALID_INPUT', 'markCorrupt needs a reason');
    this.tx(() => this.setState(model, version, 'corrupt', reason));
  }

  /** Clears a corrupt mark (its blob was verified again). NOT_FOUND if absent. */
  markOk(model: string, version: number): void {
    assertVersionNumber(version);
    this.tx(() => this.setState(model, version, 'ok', null));
  }

  /** Stores (or replaces) a version's reference profile of a kind. `body` must be JSON-serialisable. */
  putProfile(model: string, version: number, kind: string, body: unknown): ProfileRecord {
    assertIdentifier(model);
    assertVersionNumber(version);
    assertIdentifier(kind, 'profile kind');
    let json: string | undefined;
    try {
      json = JSON.stringify(body);
    } catch (e) {
      throw new SightlineError(
        'INVALID_INPUT',
        `profile body is not JSON-serialisable: ${(e as Error).message}`,
        {},
        { cause: e },
      );
    }
    if (json === undefined) throw new SightlineError('INVALID_INPUT', 'profile body is not JSON-serialisable');
    const text = json;
    return this.tx(() => {
      if (!this.s.version.get(model, version)) {
        throw new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
      }
      const createdAt = this.stamp();
      this.s.putProfile.run(model, version, kind, createdAt, text);
      return { model, version, kind, createdAt, body: JSON.parse(text) as unknown };
    });
  }

  // ---- internals ----

  /** IMMEDIATE: take the write lock at BEGIN, so two processes never deadlock upgrading read locks. */
  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private stamp(): string {
    return this.now().toISOString();
  }

  private requireModel(name: string): ModelRecord {
    assertIdentifier(name);
    const row = this.s.model.get(name);
    if (!row) throw new SightlineError('NOT_FOUND', `unknown model "${name}"`, { model: name });
    return toModel(row);
  }

  private setState(model: string, version: number, state: VersionIntegrity, reason: string | null): void {
    assertIdentifier(model);
    const r = this.s.setState.run(state, reason, model, version);
    if (r.changes === 0)
      throw new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
  }

  private validateNewVersion(v: NewVersion): Omit<VersionRow, 'version'> {
    assertIdentifier(v.model);
    assertSha256(v.sha256);
    if (!Number.isSafeInteger(v.sizeBytes) || v.sizeBytes < 0) {
      throw new SightlineError('INVALID_INPUT', `sizeBytes must be a non-negative integer, got ${v.sizeBytes}`);
    }
    const sourceName = v.sourceName ?? null;
    if (sourceName !== null) assertText(sourceName, 'source name', MAX_SOURCE_NAME);
    assertText(v.family, 'family', MAX_FAMILY);
    if (v.family === '') throw new SightlineError('INVALID_INPUT', 'family must not be empty');
    for (const [k, n] of [
      ['inputWidth', v.inputWidth],
      ['inputHeight', v.inputHeight],
    ] as const) {
      if (!Number.isSafeInteger(n) || n <= 0)
        throw new SightlineError('INVALID_INPUT', `${k} must be a positive integer, got ${n}`);
    }
    if (!Array.isArray(v.classNames) || !v.classNames.every((c) => typeof c === 'string')) {
      throw new SightlineError('INVALID_INPUT', 'classNames must be an array of strings');
    }
    const meta = v.onnxMetadata;
    if (
      typeof meta !== 'object' ||
      meta === null ||
      Array.isArray(meta) ||
      !Object.values(meta).every((x) => typeof x === 'string')
    ) {
      throw new SightlineError('INVALID_INPUT', 'onnxMetadata must be an object of string values');
    }
    const notes = v.notes ?? '';
    assertText(notes, 'notes', MAX_NOTES);
    return {
      model: v.model,
      sha256: v.sha256,
      size_bytes: v.sizeBytes,
      source_name: sourceName,
      created_at: this.stamp(),
      family: v.family,
      input_width: v.inputWidth,
      input_height: v.inputHeight,
      class_names: JSON.stringify(v.classNames),
      onnx_metadata: JSON.stringify(meta),
      notes,
      state: 'ok',
      corrupt_reason: null,
    };
  }
}

// ---- validation ----

function assertVersionNumber(version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new SightlineError('INVALID_INPUT', `version must be a positive integer, got ${version}`, { version });
  }
}

function assertText(s: string, what: string, max: number): void {
  if (typeof s !== 'string') throw new SightlineError('INVALID_INPUT', `${what} must be a string`);
  if (s.length > max)
    throw new SightlineError('INVALID_INPUT', `${what} is too long (${s.length} characters, at most ${max})`);
}

function assertAudit(actor: string, reason: string): void {
  assertText(actor, 'actor', MAX_ACTOR);
  if (actor === '')
    throw new SightlineError('INVALID_INPUT', 'actor must not be empty: history records who made each change');
  assertText(reason, 'reason', MAX_REASON);
}

// ---- row → record ----

function toModel(r: ModelRow): ModelRecord {
  return {
    name: r.name,
    createdAt: r.created_at,
    activeVersion: r.active_version,
    rollbackVersion: r.rollback_version,
    nextVersion: r.next_version,
    versionCount: r.version_count,
  };
}

function toVersion(r: VersionRow): VersionRecord {
  return {
    model: r.model,
    version: r.version,
    sha256: r.sha256,
    sizeBytes: r.size_bytes,
    sourceName: r.source_name,
    createdAt: r.created_at,
    family: r.family,
    inputWidth: r.input_width,
    inputHeight: r.input_height,
    classNames: JSON.parse(r.class_names) as string[],
    onnxMetadata: JSON.parse(r.onnx_metadata) as Record<string, string>,
    notes: r.notes,
    state: r.state,
    corruptReason: r.corrupt_reason,
  };
}

function toHistory(r: HistoryRow): HistoryRecord {
  return {
    id: r.id,
    model: r.model,
    at: r.at,
    actor: r.actor,
    action: r.action,
    fromVersion: r.from_version,
    toVersion: r.to_version,
    reason: r.reason,
  };
}

function toProfile(r: ProfileRow): ProfileRecord {
  return {
    model: r.model,
    version: r.version,
    kind: r.kind,
    createdAt: r.created_at,
    body: JSON.parse(r.body) as unknown,
  };
}
