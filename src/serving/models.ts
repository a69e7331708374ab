/**
 * Which model versions are loaded, which one is active per model, and how many requests each is
 * serving. The single place that answers "which session serves this request?". Flipping the active
 * version is one assignment, so a request sees either the old version or the new one, never neither.
 */
import { SightlineError } from '../errors.js';
import type { InferencePool, LoadOptions, ModelInfo } from '../inference/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';

export type VersionState = 'loading' | 'warming' | 'ready' | 'draining' | 'failed';

export interface LoadedVersion {
  readonly name: string;
  /** The registry's version number. */
  readonly version: number;
  readonly sha256: string;
  /** Pool key: one ONNX session per worker is registered under it. */
  readonly key: string;
  info: ModelInfo | null;
  state: VersionState;
  /** Why the load failed (state 'failed'). */
  error: string | null;
  inflight: number;
}

/** A ready version: what a request is served by. */
export type ServingVersion = LoadedVersion & { info: ModelInfo };

/** Answers, for a version that is not loaded, whether it exists at all (so the caller gets the right status); version 0: the model. */
export type VersionLookup = (name: string, version: number) => 'exists' | 'missing' | 'unknown-model';

interface ModelEntry {
  versions: Map<number, LoadedVersion>;
  active: number | null;
}

const DRAIN_POLL_MS = 10;

export class ModelManager {
  private readonly models = new Map<string, ModelEntry>();
  private defaultModel: string | null = null;
  private lookup: VersionLookup = () => 'missing';

  constructor(
    private readonly pool: InferencePool,
    private readonly log: Logger,
    /** Model events and readiness (sightline.model.*); optional so tools and tests can omit it. */
    private readonly metrics?: Metrics,
  ) {}

  /** Lets error statuses distinguish "exists but not loaded" from "does not exist" (the registry knows). */
  setLookup(lookup: VersionLookup): void {
    this.lookup = lookup;
  }

  /**
   * Loads and warms a version on every worker while everything else keeps serving. It serves nothing
   * until activate() (or a request pinning it). A failure is kept as state 'failed' with its reason.
   */
  async load(name: string, version: number, model: Uint8Array, sha256: string, options: LoadOptions): Promise<ServingVersion> {
    const entry = this.entry(name);
    const existing = entry.versions.get(version);
    if (existing?.state === 'ready') return existing as ServingVersion;
    if (existing && existing.state !== 'failed') throw new SightlineError('PRECONDITION', `model ${name} version ${version} is ${existing.state}`);
    const v: LoadedVersion = { name, version, sha256, key: `${name}@${version}`, info: null, state: 'loading', error: null, inflight: 0 };
    entry.versions.set(version, v);
    const t0 = performance.now();
    try {
      v.info = await this.pool.load(v.key, model, options, () => (v.state = 'warming'));
    } catch (e) {
      v.state = 'failed';
      v.error = (e as Error).message;
      this.log.error({ event: 'model_load_failed', model: name, version, sha256, err: v.error }, `model ${name} version ${version} failed to load`);
      this.metrics?.observeModelEvent(name, String(version), 'load_failed', (performance.now() - t0) / 1000);
      this.metrics?.setModelReady(name, String(version), false);
      throw new SightlineError('PRECONDITION', `model ${name} version ${version} failed to load: ${v.error}`, { model: name, version });
    }
    v.state = 'ready';
    this.metrics?.observeModelEvent(name, String(version), 'load', v.info.loadMs / 1000);
    this.metrics?.observeModelEvent(name, String(version), 'warmup', v.info.warmupMs / 1000);
    if (entry.active !== version) this.metrics?.setModelReady(name, String(version), false);
    const info = v.info;
    this.log.info(
      {
        event: 'model_loaded',
        model: name,
        version,
        sha256,
        family: info.family,
        input: `${info.inputWidth}x${info.inputHeight}`,
        classes: info.numClasses,
        provider: info.provider,
        loadMs: Math.round(info.loadMs),
        warmupMs: Math.round(info.warmupMs),
        totalMs: Math.round(performance.now() - t0),
      },
      `model ${name} version ${version} ready on ${info.provider}`,
    );
    return v as ServingVersion;
  }

  /**
   * Makes a ready version the one served when requests do not pin a version. Atomic. `event` names a
   * swap in the metrics (sightline.model.events): a promotion unless the caller says rollback.
   */
  activate(name: string, version: number, event: 'promote' | 'rollback' = 'promote'): void {
    const v = this.models.get(name)?.versions.get(version);
    if (!v || v.state !== 'ready') throw new SightlineError('PRECONDITION', `model ${name} version ${version} is not loaded and ready`);
    const entry = this.entry(name);
    const from = entry.active;
    entry.active = version;
    if (from !== null && from !== version) {
      this.metrics?.setModelReady(name, String(from), false);
      this.metrics?.observeModelEvent(name, String(version), event);
    }
    this.metrics?.setModelReady(name, String(version), true);
    if (this.defaultModel === null) this.defaultModel = name;
    if (from !== version) this.log.info({ event: 'model_activated', model: name, from, to: version }, `model ${name}: version ${version} is active`);
  }

  /**
   * Stops a version taking new requests, waits for the ones in flight to finish on it, then releases
   * its sessions. The active version cannot be retired.
   */
  async retire(name: string, version: number): Promise<void> {
    const entry = this.models.get(name);
    const v = entry?.versions.get(version);
    if (!entry || !v) return;
    if (entry.active === version) throw new SightlineError('PRECONDITION', `model ${name} version ${version} is active; promote another version first`);
    if (v.state === 'draining') return;
    v.state = 'draining';
    while (v.inflight > 0) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
    entry.versions.delete(version);
    if (v.info) await this.pool.unload(v.key);
    this.log.info({ event: 'model_unloaded', model: name, version }, `model ${name} version ${version} unloaded`);
    this.metrics?.observeModelEvent(name, String(version), 'unload');
    this.metrics?.forgetModel(name, String(version));
  }

  /** The model requests get when they name none. `allowUnloaded`: set it before the model is loaded. */
  setDefaultModel(name: string, opts: { allowUnloaded?: boolean } = {}): void {
    if (!opts.allowUnloaded && !this.models.has(name)) throw new SightlineError('NOT_FOUND', `default model ${name} is not loaded`);
    this.defaultModel = name;
  }

  /**
   * Picks the version that serves a request and counts it in flight. Empty name = default model;
   * version 0 = active version. Call release() when done.
   */
  acquire(name: string, version: number): ServingVersion {
    const modelName = name || this.defaultModel;
    if (!modelName) throw new SightlineError('NOT_READY', 'no model is loaded yet');
    const entry = this.models.get(modelName);
    const ver = version || entry?.active;
    if (!ver) {
      if (!entry && this.lookup(modelName, 0) === 'unknown-model') throw new SightlineError('NOT_FOUND', `unknown model "${modelName}"`, { model: modelName });
      throw new SightlineError('NOT_READY', `model "${modelName}" has no active version loaded yet`, { model: modelName });
    }
    const v = entry?.versions.get(ver);
    if (!v) {
      const known = this.lookup(modelName, ver);
      if (known === 'exists') throw new SightlineError('PRECONDITION', `model "${modelName}" version ${ver} exists but is not loaded; promote it or pin a loaded version`, { model: modelName, version: ver });
      if (known === 'unknown-model' && !entry) throw new SightlineError('NOT_FOUND', `unknown model "${modelName}"`, { model: modelName });
      throw new SightlineError('NOT_FOUND', `model "${modelName}" has no version "${ver}"`, { model: modelName, version: ver });
    }
    if (v.state !== 'ready') throw new SightlineError('PRECONDITION', `model "${modelName}" version ${ver} is ${v.state}, not ready`, { model: modelName, version: ver });
    v.inflight++;
    return v as ServingVersion;
  }

  release(v: LoadedVersion): void {
    v.inflight--;
  }

  /** True when the default model has an active, ready version. */
  isReady(): boolean {
    if (!this.defaultModel) return false;
    return this.activeVersion(this.defaultModel)?.state === 'ready';
  }

  activeVersion(name: string): LoadedVersion | undefined {
    const e = this.models.get(name);
    return e?.active ? e.versions.get(e.active) : undefined;
  }

  loaded(name: string): LoadedVersion[] {
    return [...(this.models.get(name)?.versions.values() ?? [])];
  }

  list(): { name: string; active: number | null; versions: LoadedVersion[] }[] {
    return [...this.models].map(([name, e]) => ({ name, active: e.active, versions: [...e.versions.values()] }));
  }

  private entry(name: string): ModelEntry {
    let e = this.models.get(name);
    if (!e) this.models.set(name, (e = { versions: new Map(), active: null }));
    return e;
  }
}
