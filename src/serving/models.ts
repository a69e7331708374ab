/**
 * Which model versions are loaded, which one is active per model, and how many requests each is
 * serving. The single place that answers "which session serves this request?", and the single place
 * that holds each version's state on this server. Flipping the active version is one assignment, so a
 * request sees either the old version or the new one, never neither.
 */
import { SightlineError } from '../errors.js';
import type { FamilyName } from '../identifiers.js';
import type { InferencePool, LoadOptions, ModelInfo } from '../inference/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { TrialRef } from './model-change.js';

/**
 * A version's state on this server: loading (file fetched, verified, loaded into every worker),
 * warming, then ready (warm, answering only requests that pin it) or serving (the model's active
 * version), draining before it is unloaded, or failed (with the reason).
 */
export type VersionState = 'loading' | 'warming' | 'ready' | 'serving' | 'draining' | 'failed';

/** A version's model file, verified against its sha256, and what loading it needs. */
export interface ModelFile {
  readonly sha256: string;
  readonly bytes: Uint8Array;
  readonly family: FamilyName;
  /** Class names in id order, as the registry validated them. */
  readonly classNames: readonly string[];
}

/** How versions are loaded here (the pool settings), the same for every version. */
export type LoadSettings = Omit<LoadOptions, 'family' | 'labelsText'>;

export interface LoadedVersion {
  readonly name: string;
  /** The registry's version number. */
  readonly version: number;
  /** Known once the file is fetched. */
  sha256: string;
  /** Pool key: one ONNX session per worker is registered under it. */
  readonly key: string;
  info: ModelInfo | null;
  state: VersionState;
  /** Why the load failed (state 'failed'). */
  error: string | null;
  inflight: number;
}

/** A warm version: what a request is served by. */
export type ServingVersion = LoadedVersion & { info: ModelInfo };

/** What the registry says exists: tells a client why no loaded version answers it. */
export interface Catalog {
  /** False until this server has heard the registry's models (a replica that has not reached it yet). */
  readonly synced: boolean;
  /** A model's active version, every version number, and its running shadow and canary; undefined for a model the registry lacks. */
  model(name: string):
    | {
        readonly active: number | null;
        readonly versions: ReadonlySet<number>;
        readonly shadow?: TrialRef | null;
        readonly canary?: TrialRef | null;
      }
    | undefined;
}

/** Which arm of a running canary a request fell in (acquireRouted). */
export interface CanaryArm {
  readonly trialId: number;
  readonly arm: 'baseline' | 'canary';
}

interface ModelEntry {
  versions: Map<number, LoadedVersion>;
  active: number | null;
}

const DRAIN_POLL_MS = 10;

export const isWarm = (v: LoadedVersion): v is ServingVersion => v.state === 'ready' || v.state === 'serving';

export class ModelManager {
  private readonly models = new Map<string, ModelEntry>();
  private readonly drains = new Map<string, Promise<void>>();
  private readonly listeners = new Set<() => void>();
  private defaultModel: string | null = null;
  private catalog: Catalog = { synced: false, model: () => undefined };

  constructor(
    private readonly pool: InferencePool,
    private readonly log: Logger,
    /** Model events and readiness (sightline.model.*); optional so tools and tests can omit it. */
    private readonly metrics?: Metrics,
  ) {}

  /** Called after every change of a version's state and of a model's active version (synchronously). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Lets error statuses tell "exists but not loaded" from "does not exist" (the follower knows). */
  setCatalog(catalog: Catalog): void {
    this.catalog = catalog;
  }

  /**
   * Fetches a version's file and loads and warms it on every worker while everything else keeps
   * serving: state loading from the first byte fetched, then warming, then ready. It serves nothing
   * until activate() (or a request pinning it). A failure, fetching or loading, is kept as state
   * 'failed' with its reason and thrown as PRECONDITION; a later load() tries again.
   */
  async load(
    name: string,
    version: number,
    fetch: () => Promise<ModelFile>,
    settings: LoadSettings,
  ): Promise<ServingVersion> {
    const entry = this.entry(name);
    const existing = entry.versions.get(version);
    if (existing && isWarm(existing)) return existing;
    if (existing && existing.state !== 'failed')
      throw new SightlineError('PRECONDITION', `model ${name} version ${version} is ${existing.state}`);
    const v: LoadedVersion = {
      name,
      version,
      sha256: '',
      key: `${name}@${version}`,
      info: null,
      state: 'loading',
      error: null,
      inflight: 0,
    };
    entry.versions.set(version, v);
    this.changed();
    const t0 = performance.now();
    try {
      const file = await fetch();
      v.sha256 = file.sha256;
      v.info = await this.pool.load(
        v.key,
        file.bytes,
        { ...settings, family: file.family, labelsText: file.classNames.join('\n') },
        () => this.setState(v, 'warming'),
      );
    } catch (e) {
      v.error = (e as Error).message;
      this.setState(v, 'failed');
      this.log.error(
        { event: 'model_load_failed', model: name, version, sha256: v.sha256, err: v.error },
        `model ${name} version ${version} failed to load`,
      );
      this.metrics?.observeModelEvent(name, String(version), 'load_failed', (performance.now() - t0) / 1000);
      this.metrics?.setModelReady(name, String(version), false);
      throw new SightlineError('PRECONDITION', `model ${name} version ${version} failed to load: ${v.error}`, {
        model: name,
        version,
      });
    }
    this.setState(v, entry.active === version ? 'serving' : 'ready');
    this.metrics?.observeModelEvent(name, String(version), 'load', v.info.loadMs / 1000);
    this.metrics?.observeModelEvent(name, String(version), 'warmup', v.info.warmupMs / 1000);
    if (entry.active !== version) this.metrics?.setModelReady(name, String(version), false);
    const info = v.info;
    this.log.info(
      {
        event: 'model_loaded',
        model: name,
        version,
        sha256: v.sha256,
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
   * Makes a warm version the one served when requests do not pin a version. Atomic. `event` names a
   * swap in the metrics (sightline.model.events): a promotion unless the caller says rollback.
   */
  activate(name: string, version: number, event: 'promote' | 'rollback' = 'promote'): void {
    const v = this.models.get(name)?.versions.get(version);
    if (!v || !isWarm(v))
      throw new SightlineError('PRECONDITION', `model ${name} version ${version} is not loaded and ready`);
    const entry = this.entry(name);
    const from = entry.active;
    entry.active = version;
    v.state = 'serving';
    if (from !== null && from !== version) {
      const old = entry.versions.get(from);
      if (old?.state === 'serving') old.state = 'ready';
      this.metrics?.setModelReady(name, String(from), false);
      this.metrics?.observeModelEvent(name, String(version), event);
    }
    this.metrics?.setModelReady(name, String(version), true);
    if (this.defaultModel === null) this.defaultModel = name;
    if (from !== version)
      this.log.info(
        { event: 'model_activated', model: name, from, to: version },
        `model ${name}: version ${version} is active`,
      );
    this.changed();
  }

  /**
   * Stops a version taking new requests, waits for the ones in flight to finish on it, then releases
   * its sessions; a failed version is simply forgotten. The active version cannot be retired. Resolves
   * when the version is gone (a second call waits for the same drain).
   */
  retire(name: string, version: number): Promise<void> {
    const entry = this.models.get(name);
    const v = entry?.versions.get(version);
    if (!entry || !v) return Promise.resolve();
    if (entry.active === version)
      return Promise.reject(
        new SightlineError('PRECONDITION', `model ${name} version ${version} is active; promote another version first`),
      );
    if (v.state === 'failed') {
      entry.versions.delete(version);
      this.metrics?.forgetModel(name, String(version));
      this.changed();
      return Promise.resolve();
    }
    const running = this.drains.get(v.key);
    if (running) return running;
    if (v.state === 'loading' || v.state === 'warming')
      return Promise.reject(new SightlineError('PRECONDITION', `model ${name} version ${version} is ${v.state}`));
    this.setState(v, 'draining');
    const drain = (async () => {
      while (v.inflight > 0) await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
      entry.versions.delete(version);
      this.changed();
      if (v.info) await this.pool.unload(v.key);
      this.log.info({ event: 'model_unloaded', model: name, version }, `model ${name} version ${version} unloaded`);
      this.metrics?.observeModelEvent(name, String(version), 'unload');
      this.metrics?.forgetModel(name, String(version));
    })().finally(() => this.drains.delete(v.key));
    this.drains.set(v.key, drain);
    return drain;
  }

  /** The model requests get when they name none. `allowUnloaded`: set it before the model is loaded. */
  setDefaultModel(name: string, opts: { allowUnloaded?: boolean } = {}): void {
    if (!opts.allowUnloaded && !this.models.has(name))
      throw new SightlineError('NOT_FOUND', `default model ${name} is not loaded`);
    this.defaultModel = name;
  }

  /**
   * Picks the version that serves a request and counts it in flight. Empty name = default model;
   * version 0 = active version. Call release() when done. When none answers, the error says why, the
   * same way in every role: NOT_FOUND (no such model or version in the registry), PRECONDITION (a
   * pinned version not loaded here, or no active version at all), NOT_READY (the active version is
   * not loaded here yet, or the registry has not been heard from).
   */
  acquire(name: string, version: number): ServingVersion {
    const modelName = name || this.defaultModel;
    if (!modelName) throw new SightlineError('NOT_READY', 'no model is loaded yet');
    const entry = this.models.get(modelName);
    const ver = version || entry?.active;
    const v = ver ? entry?.versions.get(ver) : undefined;
    if (!v) throw this.whyNone(modelName, version, entry);
    if (!isWarm(v))
      throw new SightlineError('PRECONDITION', `model "${modelName}" version ${v.version} is ${v.state}, not ready`, {
        model: modelName,
        version: v.version,
      });
    v.inflight++;
    return v;
  }

  /**
   * acquire() for a request that may fall under a canary: a request naming no version of a model whose
   * canary version is warm here is served by the canary when `bucket()` (a stable hash of the request
   * in [0, 1)) is below the canary's share, and by the active version otherwise. Anything else is
   * acquire() itself, with no arm.
   */
  acquireRouted(name: string, version: number, bucket: () => number): { v: ServingVersion; canary: CanaryArm | null } {
    const modelName = name || this.defaultModel;
    const canary = version === 0 && modelName ? this.catalog.model(modelName)?.canary : null;
    const entry = modelName ? this.models.get(modelName) : undefined;
    const cv = canary ? entry?.versions.get(canary.version) : undefined;
    if (!canary || !cv || !isWarm(cv) || entry?.active === canary.version)
      return { v: this.acquire(name, version), canary: null };
    const arm = bucket() < canary.share ? 'canary' : 'baseline';
    return { v: this.acquire(modelName!, arm === 'canary' ? canary.version : 0), canary: { trialId: canary.id, arm } };
  }

  release(v: LoadedVersion): void {
    v.inflight--;
  }

  /** True when the default model's active version is serving. */
  isReady(): boolean {
    if (!this.defaultModel) return false;
    return this.activeVersion(this.defaultModel)?.state === 'serving';
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

  private whyNone(model: string, version: number, entry: ModelEntry | undefined): SightlineError {
    const known = this.catalog.model(model);
    if (!known) {
      if (!this.catalog.synced)
        return new SightlineError(
          'NOT_READY',
          `model "${model}" is not loaded: this server has not heard from the registry yet`,
          { model },
        );
      return new SightlineError('NOT_FOUND', `unknown model "${model}"`, { model });
    }
    if (version) {
      if (!known.versions.has(version))
        return new SightlineError('NOT_FOUND', `model "${model}" has no version ${version}`, { model, version });
      return new SightlineError(
        'PRECONDITION',
        `model "${model}" version ${version} exists but is not loaded; promote it or pin a loaded version`,
        { model, version },
      );
    }
    if (known.active === null) {
      return new SightlineError(
        'PRECONDITION',
        `model "${model}" has no active version; promote one with \`sightline registry promote ${model} VERSION\``,
        { model },
      );
    }
    const state = entry?.versions.get(known.active)?.state ?? 'not loaded';
    return new SightlineError(
      'NOT_READY',
      `model "${model}": its active version ${known.active} is not serving here yet (${state})`,
      { model, version: known.active },
    );
  }

  private setState(v: LoadedVersion, state: VersionState): void {
    v.state = state;
    this.changed();
  }

  private changed(): void {
    for (const fn of this.listeners) fn();
  }

  private entry(name: string): ModelEntry {
    let e = this.models.get(name);
    if (!e) this.models.set(name, (e = { versions: new Map(), active: null }));
    return e;
  }
}
