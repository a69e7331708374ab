/**
 * Inference replicas follow the registry: WatchModels gives every model's pointers (a snapshot, then
 * each change); each needed file is downloaded once into a local content-addressed cache, verified by
 * its sha256, loaded and warmed, and only then does the pointer flip, exactly as in one process. While
 * the registry is unreachable the replica keeps serving what it has and reconnects with back-off; the
 * snapshot on reconnect catches it up.
 */
import { SightlineError } from '../errors.js';
import type { ExecutionProvider, FamilyName } from '../inference/index.js';
import type { BlobStore, TokenDigest } from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { ModelChange } from './model-change.js';
import type { ModelManager } from './models.js';

/** What a replica needs from the registry; implemented over gRPC by the transport layer. */
export interface RegistryPeer {
  /** Calls onChange with a snapshot per model, then each change; onEnd when the stream breaks. */
  watch(onChange: (c: ModelChange) => void, onEnd: (e: Error | null) => void): () => void;
  getVersion(model: string, version: number): Promise<{ sha256: string; family: string; classNames: string[]; sizeBytes: number }>;
  fetchBlob(sha256: string): AsyncIterable<Uint8Array>;
  /** The registry's token digests (auth on): replicas check callers' tokens against them. */
  syncTokens(): Promise<TokenDigest[]>;
  /** A version's stored drift reference profile (its JSON body), or null when it has none. */
  getProfile(model: string, version: number): Promise<unknown>;
  /** Stores a version's drift reference profile, with the caller's credentials when given. */
  putProfile(model: string, version: number, profile: unknown, authorization?: string): Promise<void>;
}

export interface FollowerOptions {
  keepRollbackWarm: boolean;
  maxBlobBytes: number;
  load: { intraOpThreads: number; executionProviders: readonly ExecutionProvider[]; warmupRuns: number; cpuMemArena: boolean };
  /** Reconnect back-off bounds. */
  retryMinMs: number;
  retryMaxMs: number;
}

interface Desired {
  active: number | null;
  rollback: number | null;
}

export class RegistryFollower {
  /** What the registry says, per model. */
  private readonly desired = new Map<string, Desired>();
  /** One sync at a time per model; a newer desired state is picked up when the running one ends. */
  private readonly syncing = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  private stopWatch: (() => void) | null = null;
  private stopped = false;
  private connected = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(c: ModelChange) => void>();

  constructor(
    private readonly peer: RegistryPeer,
    private readonly cache: BlobStore,
    private readonly models: ModelManager,
    private readonly opts: FollowerOptions,
    private readonly log: Logger,
  ) {
    this.retryMs = opts.retryMinMs;
  }

  start(): void {
    void this.cache.sweepTemp();
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.stopWatch?.();
  }

  /** True when every followed model serves the version the registry says is active. */
  inSync(): boolean {
    if (!this.connected && this.desired.size === 0) return false;
    for (const [name, d] of this.desired) {
      if (d.active === null) continue;
      if (this.models.activeVersion(name)?.version !== d.active) return false;
    }
    return true;
  }

  /** Called with every change the registry announces, before the replica acts on it. */
  onModelEvent(fn: (c: ModelChange) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  /** Called after every sync step (readiness may have changed). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private connect(): void {
    if (this.stopped) return;
    this.stopWatch = this.peer.watch(
      (c) => {
        if (!this.connected) {
          this.connected = true;
          this.retryMs = this.opts.retryMinMs;
          this.log.info({ event: 'registry_connected' }, 'following the registry');
        }
        for (const fn of this.eventListeners) fn(c);
        this.onModelChange(c);
      },
      (e) => {
        this.stopWatch = null;
        if (this.stopped) return;
        if (this.connected) this.log.warn({ event: 'registry_disconnected', err: e?.message }, 'lost the registry; serving the current models and reconnecting');
        this.connected = false;
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.opts.retryMaxMs, this.retryMs * 2);
      },
    );
  }

  private onModelChange(c: ModelChange): void {
    this.desired.set(c.model, { active: c.activeVersion, rollback: c.rollbackVersion });
    this.schedule(c.model);
  }

  private schedule(model: string): void {
    this.dirty.add(model);
    if (this.syncing.has(model)) return;
    const run = (async () => {
      while (this.dirty.has(model) && !this.stopped) {
        this.dirty.delete(model);
        const d = this.desired.get(model)!;
        try {
          await this.sync(model, d);
        } catch (e) {
          this.log.error({ event: 'replica_sync_failed', model, active: d.active, err: (e as Error).message }, `model ${model}: could not follow the registry (keeps serving what it has)`);
          // Try again later: the registry may come back, or the file may be fixed.
          setTimeout(() => this.schedule(model), this.opts.retryMaxMs).unref();
        }
        for (const fn of this.listeners) fn();
      }
    })().finally(() => this.syncing.delete(model));
    this.syncing.set(model, run);
  }

  /** Loads what the pointers need, flips the active version, then drains what no pointer needs. */
  private async sync(model: string, d: Desired): Promise<void> {
    if (d.active !== null) {
      await this.ensureLoaded(model, d.active);
      const before = this.models.activeVersion(model)?.version;
      if (before !== d.active) {
        this.models.activate(model, d.active);
        this.log.info({ event: 'replica_swapped', model, from: before ?? null, to: d.active }, `model ${model}: now serving version ${d.active}`);
      }
    }
    if (this.opts.keepRollbackWarm && d.rollback !== null) {
      await this.ensureLoaded(model, d.rollback).catch((e: Error) =>
        this.log.warn({ event: 'rollback_not_warm', model, version: d.rollback, err: e.message }, `model ${model}: rollback target not loaded`),
      );
    }
    const keep = new Set([d.active, this.opts.keepRollbackWarm ? d.rollback : null].filter((v) => v !== null));
    for (const v of this.models.loaded(model)) {
      if (!keep.has(v.version) && v.state !== 'draining' && this.models.activeVersion(model) !== v) await this.models.retire(model, v.version);
    }
  }

  private async ensureLoaded(model: string, version: number): Promise<void> {
    if (this.models.loaded(model).some((v) => v.version === version && v.state === 'ready')) return;
    const meta = await this.peer.getVersion(model, version);
    if (!(await this.cache.exists(meta.sha256))) {
      const t0 = performance.now();
      // putStream verifies the sha256 of what arrives before it is stored.
      await this.cache.putStream(this.peer.fetchBlob(meta.sha256), { expectedSha256: meta.sha256, maxBytes: this.opts.maxBlobBytes });
      this.log.info({ event: 'blob_fetched', model, version, sha256: meta.sha256, sizeBytes: meta.sizeBytes, ms: Math.round(performance.now() - t0) }, `model ${model} version ${version}: file downloaded`);
    }
    const bytes = new Uint8Array(await this.cache.read(meta.sha256));
    if (bytes.length !== meta.sizeBytes) throw new SightlineError('PRECONDITION', `cached file of model ${model} version ${version} has the wrong size`);
    await this.models.load(model, version, bytes, meta.sha256, {
      family: meta.family as FamilyName,
      labelsText: meta.classNames.join('\n'),
      ...this.opts.load,
    });
  }
}
