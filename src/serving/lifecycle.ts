/**
 * Follows the registry's pointers in the running server: load → warm → flip → drain. The only module
 * that knows both the registry (store, blobs) and the loaded sessions (ModelManager). Every pointer
 * change is durable in the database before the server acts on it, so a crash leaves the registry
 * consistent and a restart serves what the database says.
 */
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { SightlineError } from '../errors.js';
import { assertIdentifier, FAMILY_NAMES, isFamilyName } from '../identifiers.js';
import type { ExecutionProvider, FamilyName, InferencePool, LoadOptions } from '../inference/index.js';
import { parseProfile } from '../monitoring/index.js';
import { verifyBlobs, type BlobStore, type HistoryRecord, type ModelRecord, type ProfileRecord, type RegistryStore, type VersionRecord } from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';
import { PROFILE_KIND } from './drift.js';
import type { ModelChange, ModelChangeType } from './model-change.js';
import type { LoadedVersion, ModelManager } from './models.js';

export interface LifecycleOptions {
  /** Largest model file accepted by an upload. */
  maxUploadBytes: number;
  /** Keep the rollback target loaded, so Rollback is instant (costs one more loaded version). */
  keepRollbackWarm: boolean;
  load: { intraOpThreads: number; executionProviders: readonly ExecutionProvider[]; warmupRuns: number; cpuMemArena: boolean };
  /**
   * false for the registry role: pointers change in the database and are announced to watchers, but
   * nothing is loaded here (inference replicas load and serve).
   */
  serveModels: boolean;
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
  loaded: { version: number; state: LoadedVersion['state']; error: string | null; inflight: number; provider: string }[];
}

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

const sha256Of = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export class ModelLifecycle {
  private readonly events = new EventEmitter();
  private readonly lock = new Mutex();

  constructor(
    private readonly store: RegistryStore,
    private readonly blobs: BlobStore,
    private readonly models: ModelManager,
    private readonly pool: InferencePool,
    private readonly opts: LifecycleOptions,
    private readonly log: Logger,
  ) {
    this.events.setMaxListeners(0);
    models.setLookup((name, version) => {
      const m = this.store.getModel(name);
      if (!m) return 'unknown-model';
      if (version === 0) return 'exists';
      return this.store.getVersion(name, version) ? 'exists' : 'missing';
    });
  }

  /**
   * Start-up: removes upload leftovers, verifies every blob against its hash (a mismatch marks the
   * version corrupt: never served), then loads each model's active version (and its rollback target
   * when kept warm). A model whose active version cannot be served is reported and left unserved; the
   * server still starts with the rest.
   */
  async start(): Promise<void> {
    const swept = await this.blobs.sweepTemp();
    if (swept) this.log.warn({ event: 'registry_tmp_swept', files: swept }, `removed ${swept} unfinished upload(s)`);
    const v = await verifyBlobs(this.store, this.blobs);
    for (const c of v.corrupt) this.log.error({ event: 'registry_blob_corrupt', model: c.model, version: c.version, reason: c.reason }, `model ${c.model} version ${c.version} is corrupt and will not be served: ${c.reason}`);
    this.log.info({ event: 'registry_verified', versions: v.checked, corrupt: v.corrupt.length }, `registry: ${v.checked} version(s) verified`);
    if (!this.opts.serveModels) return;
    for (const m of this.store.listModels()) {
      if (m.activeVersion === null) continue;
      try {
        await this.ensureLoaded(m.name, m.activeVersion);
        this.models.activate(m.name, m.activeVersion);
      } catch (e) {
        this.log.error({ event: 'model_not_served', model: m.name, version: m.activeVersion, err: (e as Error).message }, `model ${m.name}: active version ${m.activeVersion} cannot be served`);
        continue;
      }
      if (this.opts.keepRollbackWarm && m.rollbackVersion !== null) {
        await this.ensureLoaded(m.name, m.rollbackVersion).catch((e: Error) =>
          this.log.warn({ event: 'rollback_not_warm', model: m.name, version: m.rollbackVersion, err: e.message }, `model ${m.name}: rollback target not loaded`),
        );
      }
    }
  }

  /**
   * Stores an upload durably, validates it (loads in ONNX Runtime on one worker, matches a family,
   * runs one inference), then records the version. Identical bytes already registered for this model
   * return the existing version.
   */
  async upload(meta: UploadMeta, chunks: AsyncIterable<Uint8Array>, actor: string): Promise<{ version: VersionRecord; created: boolean }> {
    assertIdentifier(meta.model);
    if (meta.family && !isFamilyName(meta.family)) throw new SightlineError('INVALID_INPUT', `family must be one of ${FAMILY_NAMES.join(', ')}; got "${meta.family}"`);
    const put = await this.blobs.putStream(chunks, { expectedSha256: meta.expectedSha256 || undefined, maxBytes: this.opts.maxUploadBytes });
    const known = this.store.findVersionBySha(meta.model, put.sha256);
    if (known) return { version: known, created: false };
    const bytes = new Uint8Array(await this.blobs.read(put.sha256));
    const info = await this.pool
      .probe(bytes, { family: meta.family, labelsText: meta.labels.length ? meta.labels.join('\n') : undefined, ...this.opts.load, warmupRuns: 1 })
      .catch((e: unknown) => {
        throw new SightlineError('INVALID_INPUT', `the upload is not a servable model: ${(e as Error).message}`, { model: meta.model });
      });
    return this.lock.run(async () => {
      const again = this.store.findVersionBySha(meta.model, put.sha256);
      if (again) return { version: again, created: false };
      // A concurrent delete may have removed a blob with the same content meanwhile.
      if (!(await this.blobs.exists(put.sha256))) await this.blobs.putStream(oneChunk(bytes), { maxBytes: this.opts.maxUploadBytes });
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
      this.log.info({ event: 'version_uploaded', model: version.model, version: version.version, sha256: version.sha256, sizeBytes: version.sizeBytes, family: version.family, actor }, `model ${version.model} version ${version.version} registered`);
      this.emit('version_added', version.model, actor, '', version.version);
      return { version, created: true };
    });
  }

  /** `serve --model FILE`: registers the file if new, and promotes it when the model has no active version. */
  async registerFile(name: string, path: string, opts: { labelsPath?: string; family?: FamilyName }, actor = 'sightline serve'): Promise<VersionRecord> {
    let bytes: Buffer;
    let labels: string[] = [];
    try {
      bytes = await readFile(path);
      if (opts.labelsPath) labels = (await readFile(opts.labelsPath, 'utf8')).split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
    } catch (e) {
      throw new SightlineError('NOT_FOUND', `cannot read ${(e as NodeJS.ErrnoException).path ?? path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const { version } = await this.upload({ model: name, notes: `registered from ${basename(path)} by ${actor}`, labels, family: opts.family, sourceName: basename(path) }, oneChunk(bytes), actor);
    const model = this.store.getModel(name)!;
    if (model.activeVersion === null) await this.promote(name, version.version, actor, 'first version of a model given to sightline serve');
    else if (model.activeVersion !== version.version) {
      this.log.warn({ event: 'file_not_active', model: name, version: version.version, active: model.activeVersion }, `model ${name}: ${basename(path)} is version ${version.version}, but version ${model.activeVersion} stays active; promote it to serve it`);
    }
    return version;
  }

  /**
   * Loads and warms `version` while the current one keeps serving, records the promotion, then flips
   * the pointer. Requests in flight on the old version finish on it; it stays loaded as the rollback
   * target (keepRollbackWarm) and the version that was the rollback target before is drained.
   */
  promote(model: string, version: number, actor: string, reason: string): Promise<ModelStatusView> {
    return this.lock.run(async () => {
      const before = this.requireModel(model);
      const rec = this.requireVersion(model, version);
      if (rec.state === 'corrupt') throw new SightlineError('PRECONDITION', `model ${model} version ${version} is corrupt (${rec.corruptReason ?? 'blob verification failed'}) and cannot be promoted`);
      if (this.opts.serveModels) await this.ensureLoaded(model, version);
      const change = this.store.promote(model, version, actor, reason);
      if (this.opts.serveModels) this.models.activate(model, version);
      if (change.from !== change.to) {
        this.log.info({ event: 'model_promoted', model, from: change.from, to: change.to, actor, reason }, `model ${model}: promoted version ${version}`);
        this.emit('promoted', model, actor, reason);
        this.releaseUnpointed(model, [before.rollbackVersion, this.opts.keepRollbackWarm ? null : change.from]);
      }
      return this.status(model);
    });
  }

  /** Swaps the active version and the rollback target (loading the target first if it is not warm). */
  rollback(model: string, actor: string, reason: string): Promise<ModelStatusView> {
    return this.lock.run(async () => {
      const m = this.requireModel(model);
      if (m.rollbackVersion === null) throw new SightlineError('PRECONDITION', `model ${model} has no rollback target`);
      const target = this.requireVersion(model, m.rollbackVersion);
      if (target.state === 'corrupt') throw new SightlineError('PRECONDITION', `model ${model} rollback target version ${target.version} is corrupt and cannot be served`);
      if (this.opts.serveModels) await this.ensureLoaded(model, target.version);
      const change = this.store.rollback(model, actor, reason);
      if (this.opts.serveModels) this.models.activate(model, change.to, 'rollback');
      this.log.info({ event: 'model_rolled_back', model, from: change.from, to: change.to, actor, reason }, `model ${model}: rolled back to version ${change.to}`);
      this.emit('rolled_back', model, actor, reason);
      if (!this.opts.keepRollbackWarm) this.releaseUnpointed(model, [change.from]);
      return this.status(model);
    });
  }

  /** Deletes a version that no pointer references; its blob goes too when no other version uses it. */
  deleteVersion(model: string, version: number, actor: string, reason: string): Promise<{ blobRemoved: boolean }> {
    return this.lock.run(async () => {
      this.requireVersion(model, version);
      const r = this.store.deleteVersion(model, version, actor, reason);
      await this.models.retire(model, version);
      if (!r.blobStillReferenced) await this.blobs.remove(r.sha256);
      this.log.info({ event: 'version_deleted', model, version, actor, reason, blobRemoved: !r.blobStillReferenced }, `model ${model} version ${version} deleted`);
      this.emit('version_deleted', model, actor, reason, version);
      return { blobRemoved: !r.blobStillReferenced };
    });
  }

  status(model: string): ModelStatusView {
    const m = this.requireModel(model);
    return {
      model,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      loaded: this.models
        .loaded(model)
        .map((v) => ({ version: Number(v.version), state: v.state, error: v.error, inflight: v.inflight, provider: v.info?.provider ?? '' }))
        .sort((a, b) => a.version - b.version),
    };
  }

  /** The plain bytes of a registered version's file (for replicas); files of no version are not served. */
  async readBlob(sha256: string): Promise<Buffer> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new SightlineError('INVALID_INPUT', 'sha256 must be 64 lowercase hex characters');
    if (!this.store.isBlobReferenced(sha256)) throw new SightlineError('NOT_FOUND', `no registered version has sha256 ${sha256}`);
    return this.blobs.read(sha256);
  }

  /** A version's stored drift reference profile; NOT_FOUND when it has none yet. */
  getProfile(model: string, version: number): ProfileRecord {
    this.requireModel(model);
    this.requireVersion(model, version);
    const p = this.store.getProfile(model, version, PROFILE_KIND);
    if (!p) throw new SightlineError('NOT_FOUND', `model ${model} version ${version} has no drift reference profile yet`, { model, version });
    return p;
  }

  /** Stores a version's drift reference profile (checked to be one) sent by a replica or a client. */
  putProfile(model: string, version: number, body: unknown, actor: string): ProfileRecord {
    this.requireModel(model);
    this.requireVersion(model, version);
    return this.profileStore(actor).putProfile(model, version, PROFILE_KIND, parseProfile(body));
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
        this.log.info({ event: 'profile_stored', model, version, actor }, `model ${model} version ${version}: drift reference profile stored`);
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

  /** One snapshot change per model, then every change until the returned function is called. */
  watch(listener: (c: ModelChange) => void, models: readonly string[] = []): () => void {
    const wanted = (name: string) => models.length === 0 || models.includes(name);
    for (const m of this.store.listModels()) if (wanted(m.name)) listener(this.change('snapshot', m, 'registry', ''));
    const on = (c: ModelChange) => wanted(c.model) && listener(c);
    this.events.on('change', on);
    return () => this.events.off('change', on);
  }

  /** Loads a version from its blob if it is not loaded yet; a blob that no longer matches its hash marks the version corrupt. */
  private async ensureLoaded(model: string, version: number): Promise<void> {
    const loaded = this.models.loaded(model).find((v) => v.version === version);
    if (loaded?.state === 'ready') return;
    const rec = this.requireVersion(model, version);
    if (rec.state === 'corrupt') throw new SightlineError('PRECONDITION', `model ${model} version ${version} is corrupt: ${rec.corruptReason ?? ''}`);
    const bytes = new Uint8Array(await this.blobs.read(rec.sha256));
    if (sha256Of(bytes) !== rec.sha256) {
      this.store.markCorrupt(model, version, 'blob does not match its sha256');
      throw new SightlineError('PRECONDITION', `model ${model} version ${version} is corrupt: its blob does not match its sha256`);
    }
    await this.models.load(model, version, bytes, rec.sha256, this.loadOptions(rec));
  }

  /** Stored family and class names make every later load identical to the validated one. */
  private loadOptions(rec: VersionRecord): LoadOptions {
    return { family: rec.family as FamilyName, labelsText: rec.classNames.join('\n'), ...this.opts.load };
  }

  /** Drains (in the background) loaded versions that no pointer references any more. */
  private releaseUnpointed(model: string, candidates: readonly (number | null)[]): void {
    if (!this.opts.serveModels) return;
    const m = this.store.getModel(model);
    for (const v of candidates) {
      if (v === null || v === m?.activeVersion || (this.opts.keepRollbackWarm && v === m?.rollbackVersion)) continue;
      void this.models.retire(model, v).catch((e: Error) => this.log.warn({ event: 'retire_failed', model, version: v, err: e.message }, 'retire failed'));
    }
  }

  private emit(type: ModelChangeType, model: string, actor: string, reason: string, version: number | null = null): void {
    this.events.emit('change', this.change(type, this.store.getModel(model)!, actor, reason, version));
  }

  private change(type: ModelChangeType, m: ModelRecord, actor: string, reason: string, version: number | null = null): ModelChange {
    const sha = (v: number | null) => (v === null ? null : (this.store.getVersion(m.name, v)?.sha256 ?? null));
    return {
      type,
      model: m.name,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      version,
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

async function* oneChunk(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}
