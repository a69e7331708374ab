/**
 * The registry service: stores uploaded model files, moves the active and rollback pointers, and
 * announces every change (watch). It loads nothing itself: each server that serves models follows the
 * announcements (ModelFollower) and reports back what it serves (Fleet), and every pointer change is
 * followed as a rollout until the fleet serves it. Every change, and every failed attempt at one, is
 * appended to the audit log here. Pointer changes are durable in the database before they are
 * announced, so a crash leaves the registry consistent and a restart serves what the database says.
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { SightlineError } from '../errors.js';
import { assertIdentifier, FAMILY_NAMES, isFamilyName, type FamilyName } from '../identifiers.js';
import type { InferencePool } from '../inference/index.js';
import { parseProfile } from '../monitoring/index.js';
import {
  assertSha256,
  verifyBlobs,
  type AuditInput,
  type BlobStore,
  type HistoryRecord,
  type ModelRecord,
  type ProfileRecord,
  type RegistryStore,
  type VersionRecord,
} from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { PROFILE_KIND } from './drift.js';
import { Fleet, type ReplicaModelView } from './fleet.js';
import type { ModelChange, ModelChangeType } from './model-change.js';
import type { LoadSettings } from './models.js';
import { Rollouts, type Rollout, type RolloutOptions } from './rollout.js';

export interface RegistryOptions {
  /** Largest model file an upload may send. */
  maxUploadBytes: number;
  /** How uploads are test-loaded (on one worker, with one warm-up run). */
  load: LoadSettings;
  /** A replica silent this long leaves the fleet view. */
  replicaTimeoutMs: number;
  /** A rollout whose caller sets no timeout fails when the fleet does not serve it by then. */
  rolloutTimeoutMs: number;
  /** Where registry changes are recorded; none in tools and tests that need no audit. */
  audit?: (entry: AuditInput) => void;
  metrics?: Metrics;
}

/** Who asks for a change: recorded in the history and the audit log. */
export interface Caller {
  /** The authenticated principal, or 'anonymous@<peer>' when auth is off. */
  readonly actor: string;
  /** The peer address; '' for the server itself. */
  readonly peer: string;
}

export interface UploadMeta {
  model: string;
  notes: string;
  expectedSha256?: string;
  labels: string[];
  family?: FamilyName;
  sourceName: string | null;
}

export interface ModelStatusView {
  model: string;
  activeVersion: number | null;
  rollbackVersion: number | null;
  /** Every live replica with what it holds of the model, by name. */
  replicas: ReplicaModelView[];
  /** The model's latest rollout since this process started. */
  rollout: Rollout | null;
}

/**
 * Runs before a pointer moves to `version`; throwing refuses the change and leaves the pointers. In
 * role all the local follower loads and warms the version here, so a version that cannot be served
 * is refused.
 */
export type PromoteCheck = (model: string, version: number) => Promise<void>;

/** The server itself, as a caller: `serve --model` registrations. */
const SERVER = { actor: 'sightline serve', peer: '' } satisfies Caller;

/** Serialises registry mutations so two promotes of one model (or an upload and a delete of one blob) never interleave. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn);
    this.tail = r.then(
      () => undefined,
      () => undefined,
    );
    return r;
  }
}

export class ModelRegistry {
  readonly fleet: Fleet;
  private readonly rollouts: Rollouts;
  private readonly events = new EventEmitter();
  private readonly lock = new Mutex();
  private readonly checks: PromoteCheck[] = [];

  constructor(
    private readonly store: RegistryStore,
    private readonly blobs: BlobStore,
    /** Test-loads uploads. */
    private readonly pool: InferencePool,
    private readonly opts: RegistryOptions,
    private readonly log: Logger,
  ) {
    this.events.setMaxListeners(0);
    this.fleet = new Fleet({ replicaTimeoutMs: opts.replicaTimeoutMs });
    this.rollouts = new Rollouts(this.fleet, {
      defaultTimeoutMs: opts.rolloutTimeoutMs,
      rollBack: (r) => this.autoRollback(r),
      onEnd: (r) => this.rolloutEnded(r),
    });
  }

  /** Start-up: removes upload leftovers and verifies every blob against its hash (a mismatch marks the version corrupt: never served). */
  async start(): Promise<void> {
    const swept = await this.blobs.sweepTemp();
    if (swept) this.log.warn({ event: 'registry_tmp_swept', files: swept }, `removed ${swept} unfinished upload(s)`);
    const v = await verifyBlobs(this.store, this.blobs);
    for (const c of v.corrupt)
      this.log.error(
        { event: 'registry_blob_corrupt', model: c.model, version: c.version, reason: c.reason },
        `model ${c.model} version ${c.version} is corrupt and will not be served: ${c.reason}`,
      );
    this.log.info(
      { event: 'registry_verified', versions: v.checked, corrupt: v.corrupt.length },
      `registry: ${v.checked} version(s) verified`,
    );
  }

  /** Adds a check to the one place where a pointer change is decided (see PromoteCheck). */
  addPromoteCheck(check: PromoteCheck): void {
    this.checks.push(check);
  }

  /**
   * Stores an upload durably, validates it (loads in ONNX Runtime on one worker, matches a family,
   * runs one inference), then records the version. Identical bytes already registered for this model
   * return the existing version.
   */
  upload(
    meta: UploadMeta,
    chunks: AsyncIterable<Uint8Array>,
    caller: Caller,
  ): Promise<{ version: VersionRecord; created: boolean }> {
    return this.audited(caller, 'upload', meta.model, async () => {
      assertIdentifier(meta.model);
      if (meta.family && !isFamilyName(meta.family))
        throw new SightlineError(
          'INVALID_INPUT',
          `family must be one of ${FAMILY_NAMES.join(', ')}; got "${meta.family}"`,
        );
      const put = await this.blobs.putStream(chunks, {
        expectedSha256: meta.expectedSha256 || undefined,
        maxBytes: this.opts.maxUploadBytes,
      });
      const known = this.store.findVersionBySha(meta.model, put.sha256);
      if (known) return { version: known, created: false };
      const bytes = new Uint8Array(await this.blobs.read(put.sha256));
      const info = await this.pool
        .probe(bytes, {
          ...this.opts.load,
          family: meta.family,
          labelsText: meta.labels.length ? meta.labels.join('\n') : undefined,
          warmupRuns: 1,
        })
        .catch((e: unknown) => {
          throw new SightlineError('INVALID_INPUT', `the upload is not a servable model: ${(e as Error).message}`, {
            model: meta.model,
          });
        });
      return this.lock.run(async () => {
        const again = this.store.findVersionBySha(meta.model, put.sha256);
        if (again) return { version: again, created: false };
        // A concurrent delete may have removed a blob with the same content meanwhile.
        if (!(await this.blobs.exists(put.sha256)))
          await this.blobs.putStream(oneChunk(bytes), { maxBytes: this.opts.maxUploadBytes });
        const version = this.store.insertVersion({
          model: meta.model,
          sha256: put.sha256,
          sizeBytes: put.size,
          sourceName: meta.sourceName,
          family: info.family,
          inputWidth: info.inputWidth,
          inputHeight: info.inputHeight,
          classNames: info.names,
          onnxMetadata: info.props,
          notes: meta.notes,
        });
        this.log.info(
          {
            event: 'version_uploaded',
            model: version.model,
            version: version.version,
            sha256: version.sha256,
            sizeBytes: version.sizeBytes,
            family: version.family,
            actor: caller.actor,
          },
          `model ${version.model} version ${version.version} registered`,
        );
        this.emit('version_added', version.model, caller.actor, '', version.version);
        return { version, created: true };
      });
    });
  }

  /** `serve --model FILE`: registers the file if new, and promotes it when the model has no active version. Audited as the server. */
  async registerFile(
    name: string,
    path: string,
    opts: { labelsPath?: string; family?: FamilyName },
  ): Promise<VersionRecord> {
    let bytes: Buffer;
    let labels: string[] = [];
    try {
      bytes = await readFile(path);
      if (opts.labelsPath)
        labels = (await readFile(opts.labelsPath, 'utf8'))
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter((l) => l !== '');
    } catch (e) {
      throw new SightlineError(
        'NOT_FOUND',
        `cannot read ${(e as NodeJS.ErrnoException).path ?? path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    const meta = {
      model: name,
      notes: `registered from ${basename(path)} by ${SERVER.actor}`,
      labels,
      family: opts.family,
      sourceName: basename(path),
    };
    const { version } = await this.upload(meta, oneChunk(bytes), SERVER);
    const model = this.store.getModel(name)!;
    if (model.activeVersion === null)
      await this.promote(name, version.version, SERVER, 'first version of a model given to sightline serve');
    else if (model.activeVersion !== version.version) {
      this.log.warn(
        { event: 'file_not_active', model: name, version: version.version, active: model.activeVersion },
        `model ${name}: ${basename(path)} is version ${version.version}, but version ${model.activeVersion} stays active; promote it to serve it`,
      );
    }
    return version;
  }

  /**
   * Makes `version` active (the previous active version becomes the rollback target) once every
   * promote check passed, announces it and starts its rollout. Promoting the active version again
   * changes nothing and starts no rollout.
   */
  promote(
    model: string,
    version: number,
    caller: Caller,
    reason: string,
    rollout: RolloutOptions = {},
  ): Promise<ModelStatusView> {
    return this.audited(caller, 'promote', `${model}@${version}`, () =>
      this.lock.run(async () => {
        this.requireModel(model);
        await this.precommit(model, version);
        const change = this.store.promote(model, version, caller.actor, reason);
        if (change.from !== change.to) {
          this.log.info(
            { event: 'model_promoted', model, from: change.from, to: change.to, actor: caller.actor, reason },
            `model ${model}: promoted version ${version}`,
          );
          this.startRollout(model, change.to, change.from, 'promote', caller, rollout);
          this.emit('promoted', model, caller.actor, reason);
        }
        return this.status(model);
      }),
    );
  }

  /** Swaps the active version and the rollback target, as a rollout like promote(). */
  rollback(model: string, caller: Caller, reason: string, rollout: RolloutOptions = {}): Promise<ModelStatusView> {
    return this.audited(caller, 'rollback', model, () =>
      this.lock.run(async () => {
        const m = this.requireModel(model);
        if (m.rollbackVersion === null)
          throw new SightlineError('PRECONDITION', `model ${model} has no rollback target`);
        await this.precommit(model, m.rollbackVersion);
        const change = this.store.rollback(model, caller.actor, reason);
        this.log.info(
          { event: 'model_rolled_back', model, from: change.from, to: change.to, actor: caller.actor, reason },
          `model ${model}: rolled back to version ${change.to}`,
        );
        this.startRollout(model, change.to, change.from, 'rollback', caller, rollout);
        this.emit('rolled_back', model, caller.actor, reason);
        return this.status(model);
      }),
    );
  }

  /** Deletes a version that no pointer references; its blob goes too when no other version uses it. Replicas unload it. */
  deleteVersion(model: string, version: number, caller: Caller, reason: string): Promise<{ blobRemoved: boolean }> {
    return this.audited(caller, 'delete', `${model}@${version}`, () =>
      this.lock.run(async () => {
        this.requireVersion(model, version);
        const r = this.store.deleteVersion(model, version, caller.actor, reason);
        if (!r.blobStillReferenced) await this.blobs.remove(r.sha256);
        this.log.info(
          {
            event: 'version_deleted',
            model,
            version,
            actor: caller.actor,
            reason,
            blobRemoved: !r.blobStillReferenced,
          },
          `model ${model} version ${version} deleted`,
        );
        this.emit('version_deleted', model, caller.actor, reason, version);
        return { blobRemoved: !r.blobStillReferenced };
      }),
    );
  }

  status(model: string): ModelStatusView {
    const m = this.requireModel(model);
    return {
      model,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      replicas: this.fleet.forModel(model),
      rollout: this.rollouts.latest(model),
    };
  }

  /** Follows a model's rollout (id 0: the latest); see Rollouts.watch. */
  watchRollout(model: string, id: number, fn: (r: Rollout) => void): () => void {
    this.requireModel(model);
    return this.rollouts.watch(model, id, fn);
  }

  /**
   * The plain bytes of a registered version's file, verified against its sha256 (for replicas, and
   * for this process's own follower). A blob that fails verification marks its versions corrupt.
   */
  async readBlob(sha256: string): Promise<Buffer> {
    assertSha256(sha256);
    if (!this.store.isBlobReferenced(sha256))
      throw new SightlineError('NOT_FOUND', `no registered version has sha256 ${sha256}`);
    try {
      return await this.blobs.read(sha256);
    } catch (e) {
      if (e instanceof SightlineError && e.fields.corrupt === true) {
        for (const v of this.store.allVersions())
          if (v.sha256 === sha256) this.store.markCorrupt(v.model, v.version, String(e.fields.reason ?? e.message));
      }
      throw e;
    }
  }

  /** A version's stored drift reference profile; NOT_FOUND when it has none yet. */
  getProfile(model: string, version: number): ProfileRecord {
    this.requireModel(model);
    this.requireVersion(model, version);
    const p = this.store.getProfile(model, version, PROFILE_KIND);
    if (!p)
      throw new SightlineError('NOT_FOUND', `model ${model} version ${version} has no drift reference profile yet`, {
        model,
        version,
      });
    return p;
  }

  /** Stores a version's drift reference profile (checked to be one) sent by a replica or a client. */
  putProfile(model: string, version: number, body: unknown, caller: Caller): Promise<ProfileRecord> {
    return this.audited(caller, 'profile', `${model}@${version}`, async () => {
      this.requireModel(model);
      this.requireVersion(model, version);
      return this.profileStore(caller.actor).putProfile(model, version, PROFILE_KIND, parseProfile(body));
    });
  }

  /**
   * The registry's profiles table as the DriftMonitor uses it: every write is announced to watchers
   * (MODEL_EVENT_TYPE_PROFILE_UPDATED), so inference replicas re-read the profile.
   */
  profileStore(actor = 'drift-monitor'): Pick<RegistryStore, 'getProfile' | 'putProfile'> {
    return {
      getProfile: (model, version, kind) => this.store.getProfile(model, version, kind),
      putProfile: (model, version, kind, body) => {
        const rec = this.store.putProfile(model, version, kind, body);
        this.log.info(
          { event: 'profile_stored', model, version, actor },
          `model ${model} version ${version}: drift reference profile stored`,
        );
        this.emit('profile_updated', model, actor, '', version);
        return rec;
      },
    };
  }

  listModels(): ModelRecord[] {
    return this.store.listModels();
  }

  listVersions(model: string): VersionRecord[] {
    this.requireModel(model);
    return this.store.listVersions(model);
  }

  getVersion(model: string, version: number): VersionRecord {
    this.requireModel(model);
    return this.requireVersion(model, version);
  }

  history(model: string, limit?: number): HistoryRecord[] {
    this.requireModel(model);
    return this.store.history(model, limit);
  }

  /** One snapshot change per model, then `synced`, then every change until the returned function is called. */
  watch(listener: (c: ModelChange) => void, models: readonly string[] = []): () => void {
    const wanted = (name: string) => models.length === 0 || models.includes(name);
    for (const m of this.store.listModels()) if (wanted(m.name)) listener(this.change('snapshot', m, 'registry', ''));
    listener(SYNCED());
    const on = (c: ModelChange) => wanted(c.model) && listener(c);
    this.events.on('change', on);
    return () => this.events.off('change', on);
  }

  close(): void {
    this.rollouts.close();
    this.fleet.close();
  }

  /** The one place a pointer change is decided: the version must be servable, then every added check must pass. */
  private async precommit(model: string, version: number): Promise<void> {
    const rec = this.requireVersion(model, version);
    if (rec.state === 'corrupt')
      throw new SightlineError(
        'PRECONDITION',
        `model ${model} version ${version} is corrupt (${rec.corruptReason ?? 'blob verification failed'}) and cannot be served`,
      );
    for (const check of this.checks) await check(model, version);
  }

  private startRollout(
    model: string,
    to: number,
    from: number | null,
    action: 'promote' | 'rollback',
    caller: Caller,
    o: RolloutOptions,
  ): void {
    this.rollouts.start(model, to, from, action, caller, o);
  }

  private async autoRollback(r: Rollout): Promise<number> {
    const m = this.requireModel(r.model);
    if (m.activeVersion !== r.version)
      throw new SightlineError('PRECONDITION', `model ${r.model} no longer has version ${r.version} active`);
    await this.rollback(
      r.model,
      r.caller,
      `automatic rollback: the rollout of version ${r.version} failed: ${r.reason}`,
    );
    return this.rollouts.latest(r.model)!.id;
  }

  private rolloutEnded(r: Rollout): void {
    const seconds = ((r.endedAt ?? r.startedAt) - r.startedAt) / 1000;
    this.log[r.phase === 'succeeded' ? 'info' : 'warn'](
      {
        event: 'rollout_ended',
        model: r.model,
        version: r.version,
        action: r.action,
        phase: r.phase,
        ready: r.ready,
        total: r.total,
        seconds,
        reason: r.reason,
      },
      `model ${r.model}: rollout of version ${r.version} ${r.phase}: ${r.reason}`,
    );
    this.opts.metrics?.observeRollout(r.model, r.phase, seconds);
    this.record(
      r.caller,
      'rollout',
      `${r.model}@${r.version}`,
      r.phase === 'succeeded' ? 'ok' : 'error',
      `${r.phase}: ${r.reason}`,
    );
  }

  /** Runs a change and appends its outcome to the audit log (a failure with its message). */
  private async audited<T>(caller: Caller, action: string, target: string, fn: () => Promise<T>): Promise<T> {
    try {
      const v = await fn();
      this.record(caller, action, target, 'ok');
      return v;
    } catch (e) {
      this.record(caller, action, target, 'error', (e as Error).message);
      throw e;
    }
  }

  private record(caller: Caller, action: string, target: string, outcome: 'ok' | 'error', reason = ''): void {
    this.opts.audit?.({ principal: caller.actor, peer: caller.peer, action, target, outcome, reason });
  }

  private emit(
    type: ModelChangeType,
    model: string,
    actor: string,
    reason: string,
    version: number | null = null,
  ): void {
    this.events.emit('change', this.change(type, this.store.getModel(model)!, actor, reason, version));
  }

  private change(
    type: ModelChangeType,
    m: ModelRecord,
    actor: string,
    reason: string,
    version: number | null = null,
  ): ModelChange {
    const versions = this.store.listVersions(m.name);
    const sha = (v: number | null) => (v === null ? null : (versions.find((x) => x.version === v)?.sha256 ?? null));
    return {
      type,
      model: m.name,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      version,
      versions: versions.map((v) => v.version),
      activeSha256: sha(m.activeVersion),
      rollbackSha256: sha(m.rollbackVersion),
      actor,
      reason,
      at: new Date().toISOString(),
    };
  }

  private requireModel(model: string): ModelRecord {
    assertIdentifier(model);
    const m = this.store.getModel(model);
    if (!m) throw new SightlineError('NOT_FOUND', `unknown model "${model}"`, { model });
    return m;
  }

  private requireVersion(model: string, version: number): VersionRecord {
    const v = this.store.getVersion(model, version);
    if (!v) throw new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
    return v;
  }
}

/** The end of a watch's snapshot. */
const SYNCED = (): ModelChange => ({
  type: 'synced',
  model: '',
  activeVersion: null,
  rollbackVersion: null,
  version: null,
  versions: [],
  activeSha256: null,
  rollbackSha256: null,
  actor: 'registry',
  reason: '',
  at: new Date().toISOString(),
});

async function* oneChunk(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}
