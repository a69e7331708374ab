/**
 * Drift and anomaly monitoring in the running server. Per loaded model version: the reference profile
 * (read from the registry, or built from the first drift.trafficProfileSize requests and then stored
 * there), a sliding window of recent requests, single-request anomaly checks against the profile's
 * fences, and the drift gauges. The statistics themselves are monitoring/ (pure); this module only
 * holds state, talks to the registry and the metrics, and keeps time.
 *
 * Cost per request: one anomaly check (12 comparisons) and a window push (12 stores). Reports (sorts
 * of the window) are computed on demand and by a timer, at most every drift.updateIntervalMs per
 * version, never per request.
 */
import {
  anomalyBounds,
  DriftWindow,
  FEATURE_NAMES,
  parseProfile,
  ProfileBuilder,
  type AnomalyBounds,
  type DriftReport,
  type DriftThresholds,
  type FeatureName,
  type FeatureSample,
  type ReferenceProfile,
} from '../monitoring/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { ModelChange } from './model-change.js';

/** The `drift` configuration section. */
export interface DriftSettings {
  enabled: boolean;
  windowSize: number;
  trafficProfileSize: number;
  minSamples: number;
  psiWarning: number;
  psiDrift: number;
  alpha: number;
  anomalyK: number;
  updateIntervalMs: number;
  anomalyLogIntervalMs: number;
}

/** Where reference profiles live: the registry's profiles table (RegistryStore fits structurally). */
export interface ProfileStore {
  getProfile(model: string, version: number, kind: string): { readonly body: unknown } | undefined;
  putProfile(model: string, version: number, kind: string, body: unknown): unknown;
}

/**
 * The registry over the network, for inference replicas (no local store): profiles are read from it
 * when a version starts being monitored and when it announces a new one, and calibration profiles are
 * written to it, so every replica monitors against the same reference.
 */
export interface RemoteProfiles {
  /** The stored profile body, or null when the version has none. */
  getProfile(model: string, version: number): Promise<unknown>;
  /** Stores it with the credentials of the caller who asked for it (`authorization`), if any. */
  putProfile(
    model: string,
    version: number,
    profile: ReferenceProfile,
    authorization: string | undefined,
  ): Promise<void>;
}

/** The registry profile kind a version's reference profile is stored under. */
export const PROFILE_KIND = 'reference';

/** The version that served a request. */
export interface SampleTarget {
  readonly model: string;
  readonly version: number;
  /** Class names of the version (class id → name). */
  readonly names: readonly string[];
}

/** What DetectService reports every request to. Must not throw. */
export interface SampleObserver {
  onSample(target: SampleTarget, sample: FeatureSample): void;
}

/** A version's monitoring state as GetDriftReport shows it. */
export interface DriftView {
  readonly model: string;
  readonly version: number;
  readonly names: readonly string[];
  /** null while a traffic profile is being collected. */
  readonly profile: ReferenceProfile | null;
  /** Requests collected towards a traffic profile, and its target (while profile is null). */
  readonly collected: number;
  readonly target: number;
  readonly windowSize: number;
  readonly windowCapacity: number;
  readonly thresholds: DriftThresholds;
  /** null without a profile. */
  readonly report: DriftReport | null;
  readonly anomalies: number;
}

interface VersionDrift {
  readonly model: string;
  readonly version: number;
  names: readonly string[];
  readonly window: DriftWindow;
  profile: ReferenceProfile | null;
  bounds: Record<FeatureName, AnomalyBounds> | null;
  /** Collecting the first requests into a traffic profile (no profile yet). */
  builder: ProfileBuilder | null;
  /** The window changed since the gauges were last set. */
  dirty: boolean;
  anomalies: number;
  lastAnomalyLogAt: number;
  /** Anomalous requests not logged since the last anomaly log line. */
  unlogged: number;
  /** Bumped whenever the profile is set: a registry read that started earlier is stale and dropped. */
  profileSeq: number;
}

const key = (model: string, version: number) => `${model}\0${version}`;

export interface DriftMonitorDeps {
  store?: ProfileStore;
  /** Inference replicas: the registry over gRPC (used when there is no local store). */
  remote?: RemoteProfiles;
  metrics?: Metrics;
  log: Logger;
  /** Milliseconds clock for the anomaly log sampling; tests inject one. */
  now?: () => number;
}

export class DriftMonitor implements SampleObserver {
  private readonly states = new Map<string, VersionDrift>();
  private readonly thresholds: DriftThresholds;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly settings: DriftSettings,
    private readonly deps: DriftMonitorDeps,
  ) {
    const { psiWarning, psiDrift, minSamples, alpha } = settings;
    this.thresholds = Object.freeze({ psiWarning, psiDrift, minSamples, alpha });
    this.now = deps.now ?? Date.now;
    if (settings.enabled) {
      this.timer = setInterval(() => this.flush(), settings.updateIntervalMs);
      this.timer.unref();
    }
  }

  get enabled(): boolean {
    return this.settings.enabled;
  }

  /**
   * A version became active (or was found active at start-up): its reference profile is read from the
   * registry now, so the first requests are already compared with it. Idempotent.
   */
  activate(model: string, version: number): void {
    if (this.enabled) this.state(model, version);
  }

  /**
   * Follows the registry (ModelFollower.onModelEvent): the active version's profile is loaded as soon as it is
   * promoted (or found active at start-up), and a deleted version's state is dropped.
   */
  onModelChange(c: Pick<ModelChange, 'type' | 'model' | 'activeVersion' | 'version'>): void {
    if (c.type === 'version_deleted' && c.version !== null) this.forget(c.model, c.version);
    // A replica re-reads what changed: one version's profile, or (a snapshot after a reconnect) all it
    // monitors. Before activate(), whose new state reads its own.
    if (this.enabled && !this.deps.store && this.deps.remote) {
      if (c.type === 'profile_updated' && c.version !== null) {
        const s = this.states.get(key(c.model, c.version));
        if (s) this.fetchRemote(s);
      } else if (c.type === 'snapshot') {
        for (const s of this.states.values()) if (s.model === c.model) this.fetchRemote(s);
      }
    }
    if (c.activeVersion !== null) this.activate(c.model, c.activeVersion);
  }

  /** Drops a version's state (deleted, or unloaded for good). */
  forget(model: string, version: number): void {
    this.states.delete(key(model, version));
  }

  onSample(target: SampleTarget, sample: FeatureSample): void {
    if (!this.enabled) return;
    try {
      const s = this.state(target.model, target.version);
      s.names = target.names;
      if (!s.profile) {
        const built = s.builder?.add(sample);
        if (built) this.install(s, built, 'traffic');
        return;
      }
      this.checkAnomaly(s, sample);
      s.window.push(sample);
      s.dirty = true;
    } catch (e) {
      // Monitoring never fails a request (a NaN feature from a degenerate image, say).
      this.deps.log.warn(
        { event: 'drift_sample_failed', model: target.model, version: target.version, err: (e as Error).message },
        'drift sample dropped',
      );
    }
  }

  /**
   * Makes `profile` the version's reference: stored in the registry (replacing any earlier one) and
   * used at once, in place of a traffic profile or one being collected. The window is kept: it holds
   * traffic, whatever it is compared with.
   */
  async setProfile(model: string, version: number, profile: ReferenceProfile, authorization?: string): Promise<void> {
    if (this.deps.store) this.deps.store.putProfile(model, version, PROFILE_KIND, profile);
    else if (this.deps.remote) await this.deps.remote.putProfile(model, version, profile, authorization);
    if (!this.enabled) return;
    const s = this.state(model, version, { skipLoad: true });
    this.use(s, profile);
    this.deps.log.info(
      { event: 'drift_profile_set', model, version, source: profile.source, n: profile.n },
      `model ${model} version ${version}: ${profile.source} reference profile of ${profile.n} images in use`,
    );
  }

  /** The version's reference from now on, in place of a traffic profile or one being collected. */
  private use(s: VersionDrift, profile: ReferenceProfile): void {
    s.profileSeq++;
    s.builder = null;
    s.profile = profile;
    s.bounds = anomalyBounds(profile, this.settings.anomalyK);
    s.dirty = true;
  }

  /**
   * Replicas: reads the version's profile from the registry and uses it if there is one. Until it
   * arrives (or if there is none) the state keeps what it has: a traffic profile being collected.
   */
  private fetchRemote(s: VersionDrift): void {
    const remote = this.deps.remote;
    if (!remote) return;
    const seq = s.profileSeq;
    remote
      .getProfile(s.model, s.version)
      .then((body) => {
        if (
          body === null ||
          body === undefined ||
          s.profileSeq !== seq ||
          this.states.get(key(s.model, s.version)) !== s
        )
          return;
        const p = parseProfile(body);
        this.use(s, p);
        this.deps.log.info(
          {
            event: 'drift_profile_loaded',
            model: s.model,
            version: s.version,
            source: p.source,
            n: p.n,
            from: 'registry',
          },
          `model ${s.model} version ${s.version}: ${p.source} reference profile read from the registry`,
        );
      })
      .catch((e: unknown) =>
        this.deps.log.warn(
          { event: 'drift_profile_unreadable', model: s.model, version: s.version, err: (e as Error).message },
          'reference profile not read from the registry; the version keeps what it has (a traffic profile being collected)',
        ),
      );
  }

  /**
   * The version's drift state, with a report computed now (and the gauges set from it). Only versions
   * that the caller has resolved to a loaded one should be asked for, so names from clients never
   * create state.
   */
  view(model: string, version: number, names: readonly string[] = []): DriftView {
    const s = this.state(model, version);
    if (names.length) s.names = names;
    const report = s.profile ? s.window.report(s.profile, this.thresholds) : null;
    if (report) this.publish(s, report);
    return {
      model,
      version,
      names: s.names,
      profile: s.profile,
      collected: s.builder?.count ?? 0,
      target: s.builder?.target ?? 0,
      windowSize: s.window.size,
      windowCapacity: s.window.capacity,
      thresholds: this.thresholds,
      report,
      anomalies: s.anomalies,
    };
  }

  /** Recomputes the report and gauges of every version whose window changed. The timer calls it. */
  flush(): void {
    for (const s of this.states.values()) {
      if (!s.dirty || !s.profile) continue;
      try {
        this.publish(s, s.window.report(s.profile, this.thresholds));
      } catch (e) {
        this.deps.log.warn(
          { event: 'drift_report_failed', model: s.model, version: s.version, err: (e as Error).message },
          'drift report failed',
        );
      }
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Gauges from a report; windows under minSamples publish nothing (their PSI is mostly noise). */
  private publish(s: VersionDrift, r: DriftReport): void {
    s.dirty = false;
    const m = this.deps.metrics;
    if (!m || r.windowSize < r.thresholds.minSamples) return;
    for (const f of r.features)
      if (f.psi !== null && f.ks !== null) m.setDrift(s.model, String(s.version), f.feature, f.psi, f.ks);
    if (r.classMix.psi !== null) m.setDrift(s.model, String(s.version), 'classMix', r.classMix.psi, Number.NaN);
  }

  private checkAnomaly(s: VersionDrift, sample: FeatureSample): void {
    const b = s.bounds!;
    let out: FeatureName[] | null = null;
    for (const name of FEATURE_NAMES) {
      const v = sample[name];
      if (!(v >= b[name].low && v <= b[name].high)) (out ??= []).push(name);
    }
    if (!out) return;
    s.anomalies++;
    for (const f of out) this.deps.metrics?.countAnomaly(s.model, String(s.version), f);
    const now = this.now();
    if (s.lastAnomalyLogAt !== 0 && now - s.lastAnomalyLogAt < this.settings.anomalyLogIntervalMs) {
      s.unlogged++;
      return;
    }
    const features = Object.fromEntries(
      out.map((f) => [f, { value: round(sample[f]), low: round(b[f].low), high: round(b[f].high) }]),
    );
    this.deps.log.warn(
      { event: 'drift_anomaly', model: s.model, version: s.version, features, unlogged: s.unlogged },
      `model ${s.model} version ${s.version}: request outside the reference range on ${out.join(', ')}` +
        (s.unlogged ? ` (${s.unlogged} more anomalous request(s) since the last line)` : ''),
    );
    s.lastAnomalyLogAt = now;
    s.unlogged = 0;
  }

  private install(s: VersionDrift, profile: ReferenceProfile, why: 'traffic'): void {
    s.builder = null;
    s.profile = profile;
    s.bounds = anomalyBounds(profile, this.settings.anomalyK);
    let stored = false;
    if (this.deps.store) {
      try {
        this.deps.store.putProfile(s.model, s.version, PROFILE_KIND, profile);
        stored = true;
      } catch (e) {
        this.deps.log.warn(
          { event: 'drift_profile_not_stored', model: s.model, version: s.version, err: (e as Error).message },
          'traffic profile kept in memory only',
        );
      }
    }
    this.deps.log.info(
      { event: 'drift_profile_built', model: s.model, version: s.version, source: why, n: profile.n, stored },
      `model ${s.model} version ${s.version}: reference profile built from the first ${profile.n} requests`,
    );
  }

  private state(model: string, version: number, opts: { skipLoad?: boolean } = {}): VersionDrift {
    const k = key(model, version);
    let s = this.states.get(k);
    if (s) return s;
    s = {
      model,
      version,
      names: [],
      window: new DriftWindow(this.settings.windowSize),
      profile: null,
      bounds: null,
      builder: null,
      dirty: false,
      anomalies: 0,
      lastAnomalyLogAt: 0,
      unlogged: 0,
      profileSeq: 0,
    };
    this.states.set(k, s);
    const stored = opts.skipLoad ? null : this.load(model, version);
    if (stored) {
      s.profile = stored;
      s.bounds = anomalyBounds(stored, this.settings.anomalyK);
    } else if (!opts.skipLoad) {
      s.builder = new ProfileBuilder(this.settings.trafficProfileSize, 'traffic', { modelVersion: String(version) });
      if (!this.deps.store) this.fetchRemote(s);
    }
    return s;
  }

  /** The stored profile of a version, or null (none, unreadable, or no registry here). */
  private load(model: string, version: number): ReferenceProfile | null {
    if (!this.deps.store) return null;
    try {
      const rec = this.deps.store.getProfile(model, version, PROFILE_KIND);
      if (!rec) return null;
      const p = parseProfile(rec.body);
      this.deps.log.info(
        { event: 'drift_profile_loaded', model, version, source: p.source, n: p.n },
        `model ${model} version ${version}: ${p.source} reference profile loaded`,
      );
      return p;
    } catch (e) {
      this.deps.log.warn(
        { event: 'drift_profile_unreadable', model, version, err: (e as Error).message },
        'stored reference profile ignored; collecting a traffic profile',
      );
      return null;
    }
  }
}

const round = (v: number) => Math.round(v * 1000) / 1000;
