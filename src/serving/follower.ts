/**
 * Follows the registry's pointers in every server that serves models: load, warm, flip, drain. One
 * implementation for every role, behind the RegistryPeer contract (the registry in process for role
 * all, over gRPC for role inference). Each version a model's pointers need is fetched (verified by its
 * sha256), loaded and warmed while the current one keeps serving; only then does the active version
 * flip, and versions no pointer needs are drained. The follower also tells ModelManager what exists
 * (Catalog, for the right status codes) and reports what this server serves to the registry (the
 * fleet view), at every change and every reportIntervalMs. While the registry is unreachable it keeps
 * serving what it has and reconnects with back-off; the snapshot on reconnect catches it up.
 */
import type { Logger } from '../telemetry/logger.js';
import type { ReplicaReport } from './fleet.js';
import type { ModelChange, TrialRef } from './model-change.js';
import type { TrialTally } from './trial-stats.js';
import type { Catalog, LoadSettings, ModelManager } from './models.js';
import type { RegistryPeer } from './registry-peer.js';

export interface FollowerOptions {
  /** This server's name in the registry's fleet view (the pod name on Kubernetes). */
  replica: string;
  /** Keep the rollback target loaded, so Rollback is instant (costs one more loaded version). */
  keepRollbackWarm: boolean;
  load: LoadSettings;
  /** Reconnect back-off bounds; a failed load is retried after retryMaxMs. */
  retryMinMs: number;
  retryMaxMs: number;
  /** A report goes to the registry at every change and at least this often. */
  reportIntervalMs: number;
  /** This server's shadow and canary tallies, sent with every report (TrialTallies.report). */
  trials?: () => TrialTally[];
}

/** A model's pointers and versions as the registry last announced them, with its running shadow and canary. */
export interface ModelPointers {
  readonly active: number | null;
  readonly rollback: number | null;
  readonly versions: ReadonlySet<number>;
  readonly shadow: TrialRef | null;
  readonly canary: TrialRef | null;
}

/**
 * The versions a server must hold for a model's pointers, active first: the one place that decides
 * it. A shadow's or a canary's candidate is one more: it runs beside the active version.
 */
export function requiredVersions(p: ModelPointers, keepRollbackWarm: boolean): number[] {
  const out: number[] = [];
  const add = (v: number | null | undefined) => v != null && !out.includes(v) && out.push(v);
  add(p.active);
  if (keepRollbackWarm) add(p.rollback);
  add(p.shadow?.version);
  add(p.canary?.version);
  return out;
}

export class ModelFollower implements Catalog {
  private readonly pointers = new Map<string, ModelPointers>();
  /** How each model's active version last changed: names the flip in the metrics. */
  private readonly swapKind = new Map<string, 'promote' | 'rollback'>();
  /** Versions loaded for a promote that has not been announced yet (prepare()); kept until the model's pointers next change. */
  private readonly held = new Map<string, Set<number>>();
  /** One reconcile at a time per model; a newer desired state is picked up when the running one ends. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly dirty = new Set<string>();
  /** A model's next pass after a failed one: one per model, dropped when a pass starts sooner for another reason. */
  private readonly retries = new Map<string, NodeJS.Timeout>();
  /** Loads in progress, so a prepare() and a reconcile of the same version share one. */
  private readonly loads = new Map<string, Promise<void>>();
  private readonly listeners = new Set<() => void>();
  private readonly eventListeners = new Set<(c: ModelChange) => void>();
  private stopWatch: (() => void) | null = null;
  private stopped = false;
  private connected = false;
  private heard = false;
  private retryMs: number;
  private retryTimer: NodeJS.Timeout | null = null;
  private reportTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly peer: RegistryPeer,
    private readonly models: ModelManager,
    private readonly opts: FollowerOptions,
    private readonly log: Logger,
  ) {
    this.retryMs = opts.retryMinMs;
    models.setCatalog(this);
    models.onChange(() => this.report());
  }

  /** True once the registry's models are known (Catalog). */
  get synced(): boolean {
    return this.heard;
  }

  model(name: string): ModelPointers | undefined {
    return this.pointers.get(name);
  }

  start(): void {
    this.connect();
    this.reportTimer = setInterval(() => this.report(), this.opts.reportIntervalMs);
    this.reportTimer.unref();
  }

  /** Stops following and reporting, and leaves the registry's fleet view. Idempotent. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.reportTimer) clearInterval(this.reportTimer);
    for (const t of this.retries.values()) clearTimeout(t);
    this.stopWatch?.();
    this.peer.leave?.();
  }

  /**
   * Why this server does not yet serve every model the registry has promoted, or null when it does.
   * A server keeps serving its version while a newer one loads, so a rollout never makes it unready;
   * a new server is unready until it has caught up.
   */
  unserved(): string | null {
    if (!this.heard) return 'has not heard from the registry yet';
    for (const [name, p] of this.pointers) {
      if (p.active === null || this.models.activeVersion(name)) continue;
      const state = this.models.loaded(name).find((v) => v.version === p.active)?.state ?? 'not loaded';
      return `model ${name}: no version serving yet (version ${p.active} is ${state})`;
    }
    return null;
  }

  /** Resolves when no model is being brought in line with its pointers (start-up waits for it). */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running.values()]);
  }

  /**
   * Loads and warms a version before its promotion is committed (role all's promote check), so a
   * version that cannot be served is refused with the reason. It stays loaded until the model's
   * pointers next change (normally: the promotion itself, announced right after).
   */
  async prepare(model: string, version: number): Promise<void> {
    const held = this.held.get(model) ?? new Set<number>();
    this.held.set(model, held.add(version));
    try {
      await this.ensureLoaded(model, version);
    } catch (e) {
      held.delete(version);
      if (this.models.activeVersion(model)?.version !== version)
        await this.models.retire(model, version).catch(() => undefined);
      throw e;
    }
  }

  /** Called with every change the registry announces, before this server acts on it. */
  onModelEvent(fn: (c: ModelChange) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  /** Called after every step that may change what this server serves (readiness may have changed). */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** What this server serves, as the registry's fleet view shows it. */
  private snapshot(): ReplicaReport {
    const names = new Set([...this.pointers.keys(), ...this.models.list().map((m) => m.name)]);
    return {
      replica: this.opts.replica,
      ...(this.opts.trials ? { trials: this.opts.trials() } : {}),
      models: [...names].sort().map((model) => {
        const serving = this.models.activeVersion(model);
        return {
          model,
          servingVersion: serving?.state === 'serving' ? serving.version : null,
          activeVersion: this.pointers.get(model)?.active ?? null,
          versions: this.models
            .loaded(model)
            .map((v) => ({
              version: v.version,
              state: v.state,
              error: v.error,
              inflight: v.inflight,
              provider: v.info?.provider ?? '',
            }))
            .sort((a, b) => a.version - b.version),
        };
      }),
    };
  }

  private report(): void {
    if (!this.stopped) this.peer.report(this.snapshot());
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
        if (this.connected)
          this.log.warn(
            { event: 'registry_disconnected', err: e?.message },
            'lost the registry; serving the current models and reconnecting',
          );
        this.connected = false;
        this.retryTimer = setTimeout(() => this.connect(), this.retryMs);
        this.retryMs = Math.min(this.opts.retryMaxMs, this.retryMs * 2);
      },
    );
  }

  private onModelChange(c: ModelChange): void {
    if (c.type === 'synced') {
      this.heard = true;
      this.report();
      for (const fn of this.listeners) fn();
      return;
    }
    // The change a prepare() was for has been announced (a promote, or a canary starting).
    if (c.type === 'snapshot' || c.type === 'promoted' || c.type === 'rolled_back' || c.type === 'trial_changed')
      this.held.delete(c.model);
    if (c.type === 'promoted' || c.type === 'rolled_back')
      this.swapKind.set(c.model, c.type === 'rolled_back' ? 'rollback' : 'promote');
    const p: ModelPointers = {
      active: c.activeVersion,
      rollback: c.rollbackVersion,
      versions: new Set(c.versions),
      shadow: c.shadow,
      canary: c.canary,
    };
    this.pointers.set(c.model, p);
    // A version that failed before gets a fresh try now that a pointer needs it again (and a report
    // never shows that old failure as this attempt's).
    for (const v of requiredVersions(p, this.opts.keepRollbackWarm)) {
      if (this.models.loaded(c.model).some((x) => x.version === v && x.state === 'failed'))
        void this.models.retire(c.model, v);
    }
    // A warm version flips at once (one assignment); everything else waits for the model's reconcile.
    this.flip(c.model);
    this.report();
    this.schedule(c.model);
  }

  /** Makes the model's active version the served one, if it is warm here. */
  private flip(model: string): void {
    const target = this.pointers.get(model)?.active ?? null;
    if (target === null) return;
    const before = this.models.activeVersion(model)?.version ?? null;
    if (
      before === target ||
      !this.models.loaded(model).some((v) => v.version === target && (v.state === 'ready' || v.state === 'serving'))
    )
      return;
    this.models.activate(model, target, this.swapKind.get(model) ?? 'promote');
    this.log.info(
      { event: 'replica_swapped', model, from: before, to: target },
      `model ${model}: now serving version ${target}`,
    );
  }

  private schedule(model: string): void {
    this.dirty.add(model);
    if (this.running.has(model)) return;
    const run = (async () => {
      while (this.dirty.has(model) && !this.stopped) {
        this.dirty.delete(model);
        clearTimeout(this.retries.get(model));
        this.retries.delete(model);
        try {
          await this.reconcile(model);
        } catch (e) {
          const active = this.pointers.get(model)?.active ?? null;
          this.log.error(
            { event: 'replica_sync_failed', model, active, err: (e as Error).message },
            `model ${model}: could not load version ${active} (keeps serving what it has)`,
          );
          // Try again retryMaxMs after this failure (the registry may come back, or the limit that refused
          // it may change): one timer per model, so failures that outlast retryMaxMs do not chain back to back.
          const retry = setTimeout(() => {
            this.retries.delete(model);
            this.schedule(model);
          }, this.opts.retryMaxMs);
          retry.unref();
          this.retries.set(model, retry);
        }
        for (const fn of this.listeners) fn();
      }
    })().finally(() => this.running.delete(model));
    this.running.set(model, run);
  }

  /** Loads what the pointers need, flips the active version, then drains what no pointer needs. */
  private async reconcile(model: string): Promise<void> {
    const p = this.pointers.get(model)!;
    if (p.active !== null) {
      await this.ensureLoaded(model, p.active);
      this.flip(model);
    }
    for (const v of requiredVersions(p, this.opts.keepRollbackWarm).filter((x) => x !== p.active)) {
      const role =
        v === p.canary?.version ? 'canary' : v === p.shadow?.version ? 'shadow candidate' : 'rollback target';
      await this.ensureLoaded(model, v).catch((e: Error) =>
        this.log.warn(
          {
            event: role === 'rollback target' ? 'rollback_not_warm' : 'candidate_not_loaded',
            model,
            version: v,
            role,
            err: e.message,
          },
          `model ${model}: ${role} version ${v} not loaded`,
        ),
      );
    }
    // Read again: the pointers may have moved while this ran (that change schedules its own pass).
    const now = this.pointers.get(model)!;
    const keep = new Set([...requiredVersions(now, this.opts.keepRollbackWarm), ...(this.held.get(model) ?? [])]);
    const active = this.models.activeVersion(model)?.version;
    for (const v of this.models.loaded(model)) {
      if (keep.has(v.version) || v.version === active || v.state === 'loading' || v.state === 'warming') continue;
      await this.models.retire(model, v.version);
    }
  }

  /** Fetches and loads a version unless it is warm here; concurrent callers share one load. */
  private ensureLoaded(model: string, version: number): Promise<void> {
    const key = `${model}@${version}`;
    const running = this.loads.get(key);
    if (running) return running;
    const load = (async () => {
      const current = this.models.loaded(model).find((v) => v.version === version);
      if (current?.state === 'ready' || current?.state === 'serving') return;
      // Being drained (no pointer needed it a moment ago): let it go, then load it afresh.
      if (current?.state === 'draining') await this.models.retire(model, version);
      await this.models.load(model, version, () => this.peer.fetchModel(model, version), this.opts.load);
    })().finally(() => this.loads.delete(key));
    this.loads.set(key, load);
    return load;
  }
}
