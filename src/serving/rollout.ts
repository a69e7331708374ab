/**
 * Rollouts: every pointer change (promote, rollback) is followed until the fleet serves the new
 * version. A rollout succeeds when every live replica serves it, fails when a replica that has heard
 * of it reports it cannot load it or when its deadline passes, and is superseded by the model's next
 * pointer change. Its end is reported once (audit log, metrics) and, with autoRollback, a failure
 * moves the pointers back before watchers hear the outcome, which names that rollback.
 */
import { EventEmitter } from 'node:events';
import { SightlineError } from '../errors.js';
import type { Fleet, ReplicaModelView } from './fleet.js';
import type { VersionState } from './models.js';

export type RolloutPhase = 'in_progress' | 'succeeded' | 'failed' | 'superseded';
export type RolloutAction = 'promote' | 'rollback';

/** One replica's progress: the rollout's version on it. */
export interface RolloutReplica {
  readonly replica: string;
  /** null while the replica has not started on the version. */
  readonly state: VersionState | null;
  readonly error: string | null;
  readonly servingVersion: number | null;
}

/** A rollout as watchers see it (an immutable snapshot). */
export interface Rollout {
  readonly id: number;
  readonly model: string;
  readonly version: number;
  readonly fromVersion: number | null;
  readonly action: RolloutAction;
  /** Who started it: its outcome is audited under their name. */
  readonly caller: { readonly actor: string; readonly peer: string };
  readonly phase: RolloutPhase;
  readonly ready: number;
  readonly total: number;
  readonly replicas: readonly RolloutReplica[];
  /** Why it ended (failing replicas and their reasons, or a summary); '' while in progress. */
  readonly reason: string;
  /** Milliseconds since the epoch. */
  readonly startedAt: number;
  readonly deadline: number;
  readonly endedAt: number | null;
  readonly autoRollback: boolean;
  /** The rollout of the rollback that autoRollback started. */
  readonly rolledBackBy: number | null;
}

export interface RolloutOptions {
  /** 0 or absent: the default. */
  timeoutMs?: number;
  autoRollback?: boolean;
}

export interface RolloutsOptions {
  defaultTimeoutMs: number;
  /** autoRollback: moves the pointers back and returns the id of that rollback's rollout. */
  rollBack(failed: Rollout): Promise<number>;
  /** Once per rollout, as soon as it has ended (before any automatic rollback). */
  onEnd(r: Rollout): void;
  now?: () => number;
}

const TERMINAL = (p: RolloutPhase) => p !== 'in_progress';

/** A finished rollout stays watchable until this many newer ones exist. */
const KEEP_ENDED = 100;

export class Rollouts {
  private nextId = 1;
  /** Rollouts by id: every one in progress and the latest ended ones. */
  private readonly byId = new Map<number, { r: Rollout; timer: NodeJS.Timeout | null }>();
  private readonly latestOf = new Map<string, number>();
  private readonly events = new EventEmitter();
  private readonly now: () => number;
  private readonly stopFleet: () => void;

  constructor(
    private readonly fleet: Fleet,
    private readonly opts: RolloutsOptions,
  ) {
    this.events.setMaxListeners(0);
    this.now = opts.now ?? Date.now;
    this.stopFleet = fleet.onChange(() => {
      for (const e of this.byId.values()) if (!TERMINAL(e.r.phase)) this.evaluate(e.r.id);
    });
  }

  /** Starts following a pointer change that has just been committed; the model's previous rollout, if still running, is superseded. */
  start(
    model: string,
    version: number,
    fromVersion: number | null,
    action: RolloutAction,
    caller: Rollout['caller'],
    o: RolloutOptions = {},
  ): Rollout {
    const previous = this.latest(model);
    if (previous && !TERMINAL(previous.phase)) {
      void this.end(previous.id, 'superseded', `superseded by the ${action} to version ${version} by ${caller.actor}`);
    }
    const id = this.nextId++;
    const startedAt = this.now();
    const timeoutMs = o.timeoutMs || this.opts.defaultTimeoutMs;
    const r: Rollout = {
      id,
      model,
      version,
      fromVersion,
      action,
      caller,
      phase: 'in_progress',
      ready: 0,
      total: 0,
      replicas: [],
      reason: '',
      startedAt,
      deadline: startedAt + timeoutMs,
      endedAt: null,
      autoRollback: !!o.autoRollback,
      rolledBackBy: null,
    };
    const timer = setTimeout(() => this.evaluate(id), timeoutMs);
    timer.unref();
    this.byId.set(id, { r, timer });
    this.latestOf.set(model, id);
    this.forgetOld();
    this.evaluate(id);
    return this.byId.get(id)!.r;
  }

  latest(model: string): Rollout | null {
    const id = this.latestOf.get(model);
    return id === undefined ? null : (this.byId.get(id)?.r ?? null);
  }

  /**
   * Calls `fn` with the rollout now, then with every change, the last call being the one that ends it.
   * id 0: the model's latest. NOT_FOUND when there is none. Returns the function that stops watching.
   */
  watch(model: string, id: number, fn: (r: Rollout) => void): () => void {
    const r = id ? this.byId.get(id)?.r : this.latest(model);
    if (!r || r.model !== model) {
      throw new SightlineError(
        'NOT_FOUND',
        id ? `model "${model}" has no rollout ${id}` : `model "${model}" has had no rollout since the registry started`,
        { model },
      );
    }
    fn(r);
    if (TERMINAL(r.phase)) return () => undefined;
    const on = (u: Rollout) => {
      if (u.id !== r.id) return;
      fn(u);
      if (TERMINAL(u.phase)) this.events.off('update', on);
    };
    this.events.on('update', on);
    return () => this.events.off('update', on);
  }

  close(): void {
    this.stopFleet();
    for (const e of this.byId.values()) if (e.timer) clearTimeout(e.timer);
  }

  /** Recomputes a running rollout from the fleet view; ends it when it has succeeded or failed. */
  private evaluate(id: number): void {
    const e = this.byId.get(id);
    if (!e || TERMINAL(e.r.phase)) return;
    const r = e.r;
    const replicas = this.fleet.forModel(r.model).map((v) => progressOf(v, r.version));
    const ready = replicas.filter((p) => p.servingVersion === r.version).length;
    const failed = replicas.filter((p) => p.state === 'failed');
    const before = e.r;
    this.update(id, { replicas, ready, total: replicas.length });
    if (failed.length > 0) {
      void this.end(id, 'failed', failed.map((f) => `${f.replica}: ${f.error ?? 'failed'}`).join('; '));
    } else if (replicas.length > 0 && ready === replicas.length) {
      void this.end(
        id,
        'succeeded',
        `${ready}/${replicas.length} replica(s) serve version ${r.version} after ${seconds(this.now() - r.startedAt)}`,
      );
    } else if (this.now() >= r.deadline) {
      const pending = replicas
        .filter((p) => p.servingVersion !== r.version)
        .map((p) => `${p.replica} (${p.state ?? 'not started'})`);
      const why =
        replicas.length === 0
          ? 'no replica reports to the registry'
          : `${ready}/${replicas.length} replica(s) serve version ${r.version}; waiting for ${pending.join(', ')}`;
      void this.end(id, 'failed', `timed out after ${seconds(r.deadline - r.startedAt)}: ${why}`);
    } else if (!sameProgress(before, this.byId.get(id)!.r)) {
      this.events.emit('update', this.byId.get(id)!.r);
    }
  }

  /**
   * Ends a rollout once. onEnd hears it at once (the audit log keeps the order things happened in);
   * with autoRollback a failure starts the rollback first, so that watchers hear the end with it.
   */
  private async end(id: number, phase: Exclude<RolloutPhase, 'in_progress'>, reason: string): Promise<void> {
    const e = this.byId.get(id);
    if (!e || TERMINAL(e.r.phase)) return;
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
    const rollingBack = phase === 'failed' && e.r.autoRollback;
    this.update(id, {
      phase,
      reason: rollingBack ? `${reason}; rolling back to version ${e.r.fromVersion}` : reason,
      endedAt: this.now(),
    });
    this.opts.onEnd(e.r);
    if (rollingBack) {
      try {
        const by = await this.opts.rollBack(e.r);
        this.update(id, { rolledBackBy: by, reason: `${reason}; rolled back to version ${e.r.fromVersion}` });
      } catch (err) {
        this.update(id, { reason: `${reason}; the automatic rollback failed: ${(err as Error).message}` });
      }
    }
    this.events.emit('update', this.byId.get(id)!.r);
  }

  private update(id: number, patch: Partial<Rollout>): void {
    const e = this.byId.get(id)!;
    e.r = { ...e.r, ...patch };
  }

  private forgetOld(): void {
    const ended = [...this.byId.values()].filter((e) => TERMINAL(e.r.phase) && this.latestOf.get(e.r.model) !== e.r.id);
    for (const e of ended.slice(0, Math.max(0, ended.length - KEEP_ENDED))) this.byId.delete(e.r.id);
  }
}

/**
 * Where a replica stands on `version`. Serving it counts whatever the replica has heard; a failure
 * counts only once the replica has heard that the version is active (so a failure reported for an
 * earlier attempt cannot fail a new rollout).
 */
function progressOf(v: ReplicaModelView, version: number): RolloutReplica {
  const heard = v.activeVersion === version;
  const own = v.versions.find((x) => x.version === version);
  const state = v.servingVersion === version ? 'serving' : heard ? (own?.state ?? null) : null;
  return {
    replica: v.replica,
    state,
    error: state === 'failed' ? (own?.error ?? null) : null,
    servingVersion: v.servingVersion,
  };
}

const sameProgress = (a: Rollout, b: Rollout) =>
  a.ready === b.ready && a.total === b.total && JSON.stringify(a.replicas) === JSON.stringify(b.replicas);

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
