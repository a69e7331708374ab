/**
 * The fleet view, kept by the registry in memory: the latest report of every replica that serves
 * models (each inference replica, or the one process of role all), dropped when its report stream
 * ends or when it stays silent for replicaTimeoutMs. Rollouts and `registry status` read it.
 */
import { EventEmitter } from 'node:events';
import type { VersionState } from './models.js';
import type { TrialTally } from './trial-stats.js';

/** One version on one replica. */
export interface ReplicaVersion {
  readonly version: number;
  readonly state: VersionState;
  /** Why it failed to load (state 'failed'). */
  readonly error: string | null;
  readonly inflight: number;
  /** The execution provider its sessions use; '' until loaded. */
  readonly provider: string;
}

/** What one replica holds of one model. */
export interface ReplicaModelReport {
  readonly model: string;
  /** The version answering requests that name none; null when none. */
  readonly servingVersion: number | null;
  /** The active version as the replica last heard it from the registry (what it is moving to). */
  readonly activeVersion: number | null;
  readonly versions: readonly ReplicaVersion[];
}

/** A replica's report of everything it serves. New kinds of per-version statistics go here. */
export interface ReplicaReport {
  /** Identity: the pod name (host name) unless configured. */
  readonly replica: string;
  readonly models: readonly ReplicaModelReport[];
  /** Its tallies of the shadows and canaries it takes part in (cumulative; the registry sums replicas). */
  readonly trials?: readonly TrialTally[];
}

/** One replica as the fleet view shows it for one model. */
export interface ReplicaModelView extends ReplicaModelReport {
  readonly replica: string;
  /** When the registry last heard from it (ms since the epoch). */
  readonly reportedAt: number;
}

export interface FleetOptions {
  /** A replica silent this long leaves the fleet view. */
  replicaTimeoutMs: number;
  now?: () => number;
}

interface Entry {
  report: ReplicaReport;
  reportedAt: number;
  /** The report stream it arrived on: a replica leaves when that stream ends, unless a newer one replaced it. */
  session: object | undefined;
}

export class Fleet {
  private readonly replicas = new Map<string, Entry>();
  private readonly events = new EventEmitter();
  private readonly now: () => number;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly opts: FleetOptions) {
    this.events.setMaxListeners(0);
    this.now = opts.now ?? Date.now;
    this.timer = setInterval(() => this.sweep(), Math.max(100, Math.floor(opts.replicaTimeoutMs / 4)));
    this.timer.unref();
  }

  /** Records a replica's latest report. `session`: the stream it came on (end() drops the replica). */
  report(report: ReplicaReport, session?: object): void {
    this.replicas.set(report.replica, { report, reportedAt: this.now(), session });
    this.changed();
  }

  /** The replica's report stream ended: it leaves, unless it already reports on a newer stream. */
  end(session: object): void {
    for (const [name, e] of this.replicas) {
      if (e.session !== session) continue;
      this.replicas.delete(name);
      this.changed();
    }
  }

  /** Live replicas with what they hold of `model` (empty for a model they have not loaded), by name. */
  forModel(model: string): ReplicaModelView[] {
    return this.live()
      .map((e) => ({
        ...(e.report.models.find((m) => m.model === model) ?? {
          model,
          servingVersion: null,
          activeVersion: null,
          versions: [],
        }),
        replica: e.report.replica,
        reportedAt: e.reportedAt,
      }))
      .sort((a, b) => a.replica.localeCompare(b.replica));
  }

  /** Every live replica's report and when it arrived. */
  all(): { report: ReplicaReport; reportedAt: number }[] {
    return this.live().map((e) => ({ report: e.report, reportedAt: e.reportedAt }));
  }

  /** Called after every report and every replica that leaves. */
  onChange(fn: () => void): () => void {
    this.events.on('change', fn);
    return () => this.events.off('change', fn);
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Replicas heard from within the timeout (reads never wait for the sweep). */
  private live(): Entry[] {
    const oldest = this.now() - this.opts.replicaTimeoutMs;
    return [...this.replicas.values()].filter((e) => e.reportedAt >= oldest);
  }

  /** Drops silent replicas and tells the listeners (a rollout waiting on one can now finish). */
  private sweep(): void {
    const oldest = this.now() - this.opts.replicaTimeoutMs;
    for (const [name, e] of this.replicas) {
      if (e.reportedAt >= oldest) continue;
      this.replicas.delete(name);
      this.changed();
    }
  }

  private changed(): void {
    this.events.emit('change');
  }
}
