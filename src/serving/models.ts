/**
 * Which model versions are loaded, which one is active per model, and how many requests each is
 * serving. The single place that answers "which session serves this request?".
 */
import { SightlineError } from '../errors.js';
import type { InferencePool, LoadOptions, ModelInfo } from '../inference/index.js';
import type { Logger } from '../telemetry/logger.js';

export type VersionState = 'loading' | 'warming' | 'ready' | 'draining' | 'failed';

export interface LoadedVersion {
  readonly name: string;
  readonly version: string;
  readonly sha256: string;
  /** Pool key: one ONNX session per worker is registered under it. */
  readonly key: string;
  readonly info: ModelInfo;
  state: VersionState;
  inflight: number;
}

interface ModelEntry {
  versions: Map<string, LoadedVersion>;
  active: string | null;
}

export class ModelManager {
  private readonly models = new Map<string, ModelEntry>();
  private defaultModel: string | null = null;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly pool: InferencePool,
    private readonly log: Logger,
  ) {}

  /** Loads and warms a version on every worker. It serves nothing until activate(). */
  async load(name: string, version: string, model: Uint8Array, sha256: string, options: LoadOptions): Promise<LoadedVersion> {
    const key = `${name}@${version}`;
    const t0 = performance.now();
    const info = await this.pool.load(key, model, options);
    const v: LoadedVersion = { name, version, sha256, key, info, state: 'ready', inflight: 0 };
    const entry = this.entry(name);
    entry.versions.set(version, v);
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
    return v;
  }

  /** Makes a loaded version the one served when requests do not pin a version. Atomic. */
  activate(name: string, version: string): void {
    const v = this.models.get(name)?.versions.get(version);
    if (!v || v.state !== 'ready') throw new SightlineError('PRECONDITION', `model ${name} version ${version} is not loaded and ready`);
    this.entry(name).active = version;
    if (this.defaultModel === null) this.defaultModel = name;
    this.changed();
  }

  setDefaultModel(name: string): void {
    if (!this.models.has(name)) throw new SightlineError('NOT_FOUND', `default model ${name} is not loaded`);
    this.defaultModel = name;
  }

  /**
   * Picks the version that serves a request and counts it in flight. Empty name = default model;
   * empty version = active version. Call release() when done.
   */
  acquire(name: string, version: string): LoadedVersion {
    const modelName = name || this.defaultModel;
    if (!modelName) throw new SightlineError('NOT_READY', 'no model is loaded yet');
    const entry = this.models.get(modelName);
    if (!entry) throw new SightlineError('NOT_FOUND', `unknown model "${modelName}"`, { model: modelName });
    const ver = version || entry.active;
    if (!ver) throw new SightlineError('NOT_READY', `model "${modelName}" has no active version yet`);
    const v = entry.versions.get(ver);
    if (!v) throw new SightlineError('NOT_FOUND', `model "${modelName}" has no version "${ver}"`, { model: modelName, version: ver });
    if (v.state !== 'ready') throw new SightlineError('PRECONDITION', `model "${modelName}" version "${ver}" is ${v.state}, not ready`);
    v.inflight++;
    return v;
  }

  release(v: LoadedVersion): void {
    v.inflight--;
  }

  /** True when the default model has an active, ready version. */
  isReady(): boolean {
    if (!this.defaultModel) return false;
    const e = this.models.get(this.defaultModel);
    return !!e?.active && e.versions.get(e.active)?.state === 'ready';
  }

  list(): { name: string; active: string | null; versions: LoadedVersion[] }[] {
    return [...this.models].map(([name, e]) => ({ name, active: e.active, versions: [...e.versions.values()] }));
  }

  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
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
