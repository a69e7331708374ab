/**
 * The evidence a promotion is judged on, in the registry database beside the versions: golden
 * datasets (their files are blobs in the BlobStore, like model files), evaluations of versions on
 * them, and trials (shadows and canaries) with the latest tally of each process that took part (one per
 * replica and incarnation: a restarted replica adds one, never replaces its earlier counts). Synchronous, prepared
 * statements, one IMMEDIATE transaction per mutation, plain records; knows nothing of what the
 * numbers mean (serving/ does).
 */
import type Database from 'better-sqlite3';
import { SightlineError } from '../errors.js';
import { assertIdentifier } from '../identifiers.js';
import { assertSha256 } from './blobs.js';

export interface DatasetFile {
  /** Relative, '/'-separated: images/…, labels/…, classes.txt, data.yaml. */
  readonly path: string;
  readonly sha256: string;
  readonly sizeBytes: number;
}

export interface DatasetRecord {
  readonly name: string;
  readonly version: number;
  /** sha256 of the manifest (every file's path and sha256, in path order). */
  readonly sha256: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly notes: string;
  readonly images: number;
  readonly boxes: number;
  readonly sizeBytes: number;
  /** [] when the dataset names no classes. */
  readonly classNames: readonly string[];
}

export interface NewDataset {
  readonly name: string;
  readonly sha256: string;
  readonly createdBy: string;
  readonly notes: string;
  readonly images: number;
  readonly boxes: number;
  readonly classNames: readonly string[];
  readonly files: readonly DatasetFile[];
}

export interface EvaluationRecord<R = unknown> {
  readonly id: number;
  readonly model: string;
  readonly version: number;
  readonly dataset: string;
  readonly datasetVersion: number;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly report: R;
}

export type TrialKind = 'shadow' | 'canary';
export type TrialOutcome = 'stopped' | 'promoted' | 'rolled_back' | 'superseded';

export interface TrialRecord<S = unknown> {
  readonly id: number;
  readonly model: string;
  readonly kind: TrialKind;
  /** The candidate. */
  readonly version: number;
  /** The active version when the trial started: what the candidate is compared with. */
  readonly baselineVersion: number;
  /** Shadow: share of live requests also run on the candidate. Canary: share the candidate serves. */
  readonly share: number;
  readonly settings: S;
  readonly startedAt: string;
  readonly startedBy: string;
  readonly endedAt: string | null;
  readonly endedBy: string | null;
  readonly outcome: TrialOutcome | null;
  readonly reason: string;
}

export interface NewTrial {
  readonly model: string;
  readonly kind: TrialKind;
  readonly version: number;
  readonly baselineVersion: number;
  readonly share: number;
  readonly settings: Readonly<Record<string, unknown>>;
  readonly startedBy: string;
}

interface DatasetRow {
  name: string;
  version: number;
  sha256: string;
  created_at: string;
  created_by: string;
  notes: string;
  images: number;
  boxes: number;
  size_bytes: number;
  class_names: string;
}

interface EvaluationRow {
  id: number;
  model: string;
  version: number;
  dataset: string;
  dataset_version: number;
  created_at: string;
  created_by: string;
  report: string;
}

interface TrialRow {
  id: number;
  model: string;
  kind: TrialKind;
  version: number;
  baseline_version: number;
  share: number;
  settings: string;
  started_at: string;
  started_by: string;
  ended_at: string | null;
  ended_by: string | null;
  outcome: TrialOutcome | null;
  reason: string;
}

const MAX_NOTES = 16 * 1024;
const MAX_REASON = 4096;
/** A serving process's incarnation is a UUID (36 characters); the schema allows 64. */
export const MAX_INCARNATION = 64;

function prepareStatements(db: Database.Database) {
  const p = <P extends unknown[], R = unknown>(sql: string) => db.prepare<P, R>(sql);
  return {
    datasets: p<[], DatasetRow>('SELECT * FROM datasets ORDER BY name, version'),
    datasetVersions: p<[string], DatasetRow>('SELECT * FROM datasets WHERE name = ? ORDER BY version'),
    dataset: p<[string, number], DatasetRow>('SELECT * FROM datasets WHERE name = ? AND version = ?'),
    latestDataset: p<[string], DatasetRow>('SELECT * FROM datasets WHERE name = ? ORDER BY version DESC LIMIT 1'),
    datasetBySha: p<[string, string], DatasetRow>('SELECT * FROM datasets WHERE name = ? AND sha256 = ?'),
    nextDatasetVersion: p<[string], { v: number }>(
      'SELECT coalesce(max(version), 0) + 1 AS v FROM datasets WHERE name = ?',
    ),
    insertDataset: p<[DatasetRow]>(
      `INSERT INTO datasets (name, version, sha256, created_at, created_by, notes, images, boxes, size_bytes, class_names)
       VALUES (@name, @version, @sha256, @created_at, @created_by, @notes, @images, @boxes, @size_bytes, @class_names)`,
    ),
    insertFile: p<[string, number, string, string, number]>(
      'INSERT INTO dataset_files (dataset, version, path, sha256, size_bytes) VALUES (?, ?, ?, ?, ?)',
    ),
    files: p<[string, number], { path: string; sha256: string; size_bytes: number }>(
      'SELECT path, sha256, size_bytes FROM dataset_files WHERE dataset = ? AND version = ? ORDER BY path',
    ),
    insertEvaluation: p<[string, number, string, number, string, string, string]>(
      `INSERT INTO evaluations (model, version, dataset, dataset_version, created_at, created_by, report) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    ),
    evaluations: p<[string], EvaluationRow>('SELECT * FROM evaluations WHERE model = ? ORDER BY id DESC'),
    evaluationsOf: p<[string, number], EvaluationRow>(
      'SELECT * FROM evaluations WHERE model = ? AND version = ? ORDER BY id DESC',
    ),
    insertTrial: p<[string, TrialKind, number, number, number, string, string, string], { id: number }>(
      `INSERT INTO trials (model, kind, version, baseline_version, share, settings, started_at, started_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
    ),
    trial: p<[number], TrialRow>('SELECT * FROM trials WHERE id = ?'),
    openTrials: p<[string], TrialRow>('SELECT * FROM trials WHERE model = ? AND ended_at IS NULL ORDER BY id'),
    latestTrial: p<[string, TrialKind], TrialRow>(
      'SELECT * FROM trials WHERE model = ? AND kind = ? ORDER BY id DESC LIMIT 1',
    ),
    trialsOfVersion: p<[string, TrialKind, number], TrialRow>(
      'SELECT * FROM trials WHERE model = ? AND kind = ? AND version = ? ORDER BY id DESC',
    ),
    endTrial: p<[string, string, TrialOutcome, string, number]>(
      'UPDATE trials SET ended_at = ?, ended_by = ?, outcome = ?, reason = ? WHERE id = ? AND ended_at IS NULL',
    ),
    putStats: p<[number, string, string, string, string]>(
      `INSERT INTO trial_stats (trial_id, replica, incarnation, updated_at, body) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (trial_id, replica, incarnation) DO UPDATE SET updated_at = excluded.updated_at, body = excluded.body`,
    ),
    stats: p<[number], { replica: string; incarnation: string; body: string }>(
      'SELECT replica, incarnation, body FROM trial_stats WHERE trial_id = ? ORDER BY replica, updated_at, incarnation',
    ),
  };
}

export class EvidenceStore {
  private readonly s: ReturnType<typeof prepareStatements>;
  private readonly now: () => Date;

  /** Over the registry's migrated connection (RegistryStore.database). */
  constructor(
    private readonly db: Database.Database,
    opts: { now?: () => Date } = {},
  ) {
    this.s = prepareStatements(db);
    this.now = opts.now ?? (() => new Date());
  }

  // ---- datasets ----

  listDatasets(name?: string): DatasetRecord[] {
    if (name === undefined) return this.s.datasets.all().map(toDataset);
    assertIdentifier(name, 'dataset name');
    return this.s.datasetVersions.all(name).map(toDataset);
  }

  /** A dataset version; 0: the latest. NOT_FOUND when there is none. */
  getDataset(name: string, version = 0): DatasetRecord {
    assertIdentifier(name, 'dataset name');
    const row = version ? this.s.dataset.get(name, version) : this.s.latestDataset.get(name);
    if (!row)
      throw new SightlineError(
        'NOT_FOUND',
        version ? `dataset "${name}" has no version ${version}` : `unknown dataset "${name}"`,
        { dataset: name },
      );
    return toDataset(row);
  }

  datasetFiles(name: string, version: number): DatasetFile[] {
    return this.s.files.all(name, version).map((f) => ({ path: f.path, sha256: f.sha256, sizeBytes: f.size_bytes }));
  }

  findDatasetBySha(name: string, sha256: string): DatasetRecord | undefined {
    const row = this.s.datasetBySha.get(name, sha256);
    return row && toDataset(row);
  }

  /** Records a dataset version whose files are all durable in the BlobStore; numbers go up per name. */
  insertDataset(d: NewDataset): DatasetRecord {
    assertIdentifier(d.name, 'dataset name');
    assertSha256(d.sha256);
    assertNotes(d.notes);
    return this.tx(() => {
      const version = this.s.nextDatasetVersion.get(d.name)!.v;
      const row: DatasetRow = {
        name: d.name,
        version,
        sha256: d.sha256,
        created_at: this.stamp(),
        created_by: d.createdBy,
        notes: d.notes,
        images: d.images,
        boxes: d.boxes,
        size_bytes: d.files.reduce((n, f) => n + f.sizeBytes, 0),
        class_names: JSON.stringify(d.classNames),
      };
      this.s.insertDataset.run(row);
      for (const f of d.files) this.s.insertFile.run(d.name, version, f.path, f.sha256, f.sizeBytes);
      return toDataset(row);
    });
  }

  // ---- evaluations ----

  insertEvaluation<R>(e: {
    model: string;
    version: number;
    dataset: string;
    datasetVersion: number;
    createdBy: string;
    report: R;
  }): EvaluationRecord<R> {
    const createdAt = this.stamp();
    const { id } = this.tx(() =>
      this.s.insertEvaluation.get(
        e.model,
        e.version,
        e.dataset,
        e.datasetVersion,
        createdAt,
        e.createdBy,
        JSON.stringify(e.report),
      )!,
    ) as { id: number };
    return {
      id,
      model: e.model,
      version: e.version,
      dataset: e.dataset,
      datasetVersion: e.datasetVersion,
      createdAt,
      createdBy: e.createdBy,
      report: e.report,
    };
  }

  /** Evaluations of a model's versions (or of one version), newest first. */
  evaluations<R>(model: string, version?: number): EvaluationRecord<R>[] {
    assertIdentifier(model);
    const rows = version === undefined ? this.s.evaluations.all(model) : this.s.evaluationsOf.all(model, version);
    return rows.map((r) => toEvaluation<R>(r));
  }

  // ---- trials ----

  /** Starts a trial; CONFLICT-free by construction only if the caller ended the open one of its kind first. */
  insertTrial<S>(t: NewTrial): TrialRecord<S> {
    assertIdentifier(t.model);
    const { id } = this.tx(() =>
      this.s.insertTrial.get(
        t.model,
        t.kind,
        t.version,
        t.baselineVersion,
        t.share,
        JSON.stringify(t.settings),
        this.stamp(),
        t.startedBy,
      )!,
    );
    return this.trial<S>(id)!;
  }

  trial<S>(id: number): TrialRecord<S> | undefined {
    const row = this.s.trial.get(id);
    return row && toTrial<S>(row);
  }

  /** The model's open trials (at most one shadow and one canary). */
  openTrials(model: string): TrialRecord[] {
    return this.s.openTrials.all(model).map((r) => toTrial(r));
  }

  /** The model's latest trial of a kind, open or ended. */
  latestTrial<S>(model: string, kind: TrialKind): TrialRecord<S> | undefined {
    const row = this.s.latestTrial.get(model, kind);
    return row && toTrial<S>(row);
  }

  /** Every trial of a kind with this candidate version, newest first. */
  trialsOf(model: string, kind: TrialKind, version: number): TrialRecord[] {
    return this.s.trialsOfVersion.all(model, kind, version).map((r) => toTrial(r));
  }

  /** Ends an open trial once; false when it had already ended. */
  endTrial(id: number, actor: string, outcome: TrialOutcome, reason: string): boolean {
    return this.tx(
      () => this.s.endTrial.run(this.stamp(), actor, outcome, reason.slice(0, MAX_REASON), id).changes > 0,
    );
  }

  /**
   * The latest tally of a trial from one process of a replica (replaces that process's earlier one).
   * `incarnation`: the process's id, drawn when it started ('' from replicas that send none).
   */
  putTrialStats(trialId: number, replica: string, incarnation: string, body: unknown): void {
    if (incarnation.length > MAX_INCARNATION)
      throw new SightlineError(
        'INVALID_INPUT',
        `a tally's incarnation is at most ${MAX_INCARNATION} characters, got ${incarnation.length}`,
      );
    this.tx(() => this.s.putStats.run(trialId, replica, incarnation, this.stamp(), JSON.stringify(body)));
  }

  /** The latest tally of every process that took part in a trial, by replica (each replica's oldest first). */
  trialStats(trialId: number): { replica: string; incarnation: string; body: unknown }[] {
    return this.s.stats
      .all(trialId)
      .map((r) => ({ replica: r.replica, incarnation: r.incarnation, body: JSON.parse(r.body) as unknown }));
  }

  private tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  private stamp(): string {
    return this.now().toISOString();
  }
}

function assertNotes(notes: string): void {
  if (notes.length > MAX_NOTES)
    throw new SightlineError('INVALID_INPUT', `notes are too long (${notes.length} characters, at most ${MAX_NOTES})`);
}

function toDataset(r: DatasetRow): DatasetRecord {
  return {
    name: r.name,
    version: r.version,
    sha256: r.sha256,
    createdAt: r.created_at,
    createdBy: r.created_by,
    notes: r.notes,
    images: r.images,
    boxes: r.boxes,
    sizeBytes: r.size_bytes,
    classNames: JSON.parse(r.class_names) as string[],
  };
}

function toEvaluation<R>(r: EvaluationRow): EvaluationRecord<R> {
  return {
    id: r.id,
    model: r.model,
    version: r.version,
    dataset: r.dataset,
    datasetVersion: r.dataset_version,
    createdAt: r.created_at,
    createdBy: r.created_by,
    report: JSON.parse(r.report) as R,
  };
}

function toTrial<S>(r: TrialRow): TrialRecord<S> {
  return {
    id: r.id,
    model: r.model,
    kind: r.kind,
    version: r.version,
    baselineVersion: r.baseline_version,
    share: r.share,
    settings: JSON.parse(r.settings) as S,
    startedAt: r.started_at,
    startedBy: r.started_by,
    endedAt: r.ended_at,
    endedBy: r.ended_by,
    outcome: r.outcome,
    reason: r.reason,
  };
}
