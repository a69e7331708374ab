/**
 * The registry's side of shadows and canaries: which trial of a model is open, the replicas' tallies
 * of each (stored in the registry database as they arrive, so the evidence outlives a restart), their
 * sums, and a canary's verdict. Knows no locks, audit or announcements: ModelRegistry does those.
 */
import type { EvidenceStore, TrialKind, TrialOutcome, TrialRecord } from '../registry/index.js';
import type { ReplicaReport } from './fleet.js';
import type { TrialRef } from './model-change.js';
import {
  canaryVerdict,
  mergeCanary,
  mergeShadow,
  parseTally,
  summarizeCanary,
  summarizeShadow,
  type CanaryMargins,
  type CanarySummary,
  type CanaryTally,
  type ShadowSummary,
  type ShadowTally,
} from './trial-stats.js';

export type CanaryTrial = TrialRecord<CanaryMargins>;

/** A trial with the sum of every tally sent for it (each replica's, each of its processes'). */
export interface ShadowView {
  readonly trial: TrialRecord;
  readonly replicas: number;
  readonly summary: ShadowSummary;
}

export interface CanaryView {
  readonly trial: CanaryTrial;
  readonly replicas: number;
  readonly summary: CanarySummary;
}

const ref = (t: TrialRecord | undefined): TrialRef | null =>
  t ? { id: t.id, version: t.version, share: t.share } : null;

export class Trials {
  /**
   * Per trial, replica and incarnation: the JSON last stored (a report that changed nothing writes
   * nothing) and its count of events, which only grows within one process (an older tally arriving
   * late never replaces a newer one).
   */
  private readonly stored = new Map<string, { json: string; events: number }>();

  constructor(
    private readonly store: EvidenceStore,
    /** Class names of a version, to name the classes of a shadow's differences. */
    private readonly namesOf: (model: string, version: number) => readonly string[],
  ) {}

  open(model: string, kind: TrialKind): TrialRecord | undefined {
    return this.store.openTrials(model).find((t) => t.kind === kind);
  }

  /** The model's open shadow and canary, as servers need them (ModelChange). */
  refs(model: string): { shadow: TrialRef | null; canary: TrialRef | null } {
    const open = this.store.openTrials(model);
    return { shadow: ref(open.find((t) => t.kind === 'shadow')), canary: ref(open.find((t) => t.kind === 'canary')) };
  }

  /** Starts a trial; the model's open one of the same kind, if any, ends as superseded (returned). */
  start(t: {
    model: string;
    kind: TrialKind;
    version: number;
    baselineVersion: number;
    share: number;
    settings: Record<string, unknown>;
    actor: string;
  }): { started: TrialRecord; ended: TrialRecord | null } {
    const previous = this.open(t.model, t.kind);
    const ended =
      previous &&
      this.end(previous, t.actor, 'superseded', `superseded by the ${t.kind} of version ${t.version} by ${t.actor}`);
    const started = this.store.insertTrial({
      model: t.model,
      kind: t.kind,
      version: t.version,
      baselineVersion: t.baselineVersion,
      share: t.share,
      settings: t.settings,
      startedBy: t.actor,
    });
    return { started, ended: ended ?? null };
  }

  /** Ends an open trial; returns it as ended, or null when it had already ended. */
  end(t: TrialRecord, actor: string, outcome: TrialOutcome, reason: string): TrialRecord | null {
    return this.store.endTrial(t.id, actor, outcome, reason) ? this.store.trial(t.id)! : null;
  }

  /**
   * The active version moved to `active`: a trial of that version has done its job (promoted), any
   * other compared its candidate with a version that no longer serves (superseded). Returns those ended.
   */
  activeChanged(model: string, active: number | null, actor: string): TrialRecord[] {
    const ended: TrialRecord[] = [];
    for (const t of this.store.openTrials(model)) {
      if (t.baselineVersion === active) continue;
      const promoted = t.version === active;
      const e = this.end(
        t,
        actor,
        promoted ? 'promoted' : 'superseded',
        promoted
          ? `version ${t.version} was promoted by ${actor}`
          : `the active version changed to ${active ?? 'none'} (by ${actor})`,
      );
      if (e) ended.push(e);
    }
    return ended;
  }

  /**
   * Stores the tallies of a replica's report (those that changed since its last one) and returns the
   * open canaries it touched, for judging. Each serving process's tally is kept apart (by replica and
   * incarnation) and all are summed: a restarted replica's counts, which start again from zero, add to
   * those it sent before. A tally of a trial this registry does not have (a database restored from a
   * backup) is ignored; a malformed one is refused (INVALID_INPUT).
   */
  ingest(report: ReplicaReport): CanaryTrial[] {
    const canaries: CanaryTrial[] = [];
    for (const t of report.trials ?? []) {
      const trial = this.store.trial(t.trialId);
      if (!trial || trial.model !== t.model || trial.kind !== t.kind) continue;
      const body = parseTally(t.kind, t.kind === 'shadow' ? t.shadow : t.canary);
      const json = JSON.stringify(body);
      const key = `${t.trialId}\0${report.replica}\0${t.incarnation}`;
      const events = tallyEvents(body);
      const before = this.stored.get(key);
      if (before && (before.json === json || events < before.events)) continue;
      this.store.putTrialStats(t.trialId, report.replica, t.incarnation, body);
      this.stored.set(key, { json, events });
      if (trial.kind === 'canary' && trial.endedAt === null) canaries.push(trial as CanaryTrial);
    }
    return canaries;
  }

  /** A shadow trial with every process's tally summed; class names are the baseline version's. */
  shadowView(trial: TrialRecord): ShadowView {
    const { replicas, tallies } = this.tallies<ShadowTally>(trial);
    return {
      trial,
      replicas,
      summary: summarizeShadow(mergeShadow(tallies), this.namesOf(trial.model, trial.baselineVersion)),
    };
  }

  canaryView(trial: CanaryTrial): CanaryView {
    const { replicas, tallies } = this.tallies<CanaryTally>(trial);
    return { trial, replicas, summary: summarizeCanary(mergeCanary(tallies)) };
  }

  /** Every stored tally of a trial, and how many replicas (not processes) sent them. */
  private tallies<T>(trial: TrialRecord): { replicas: number; tallies: T[] } {
    const rows = this.store.trialStats(trial.id);
    return { replicas: new Set(rows.map((r) => r.replica)).size, tallies: rows.map((r) => r.body as T) };
  }

  /** Why an open canary must be rolled back now, or null. */
  verdict(trial: CanaryTrial): string | null {
    return canaryVerdict(this.canaryView(trial).summary, trial.settings);
  }

  /** An ended trial in words, for the audit log: its outcome, why, and its final tallies. */
  describeEnded(t: TrialRecord): string {
    let summary: string;
    if (t.kind === 'shadow') {
      const v = this.shadowView(t);
      const s = v.summary;
      summary =
        `${s.samples} samples from ${v.replicas} replica(s)` +
        (s.agreementMean === null
          ? ''
          : `, agreement ${s.agreementMean.toFixed(3)} (p10 ${s.agreementP10!.toFixed(2)})`) +
        (s.droppedTotal ? `, ${s.droppedTotal} dropped` : '') +
        (s.failed ? `, ${s.failed} failed` : '');
    } else {
      const { summary: c } = this.canaryView(t as CanaryTrial);
      const arm = (a: CanarySummary['canary']) =>
        `${a.requests} requests, ${a.errors} errors, p99 ${Number.isFinite(a.p99Ms) ? `${a.p99Ms.toFixed(0)} ms` : '-'}`;
      summary = `canary ${arm(c.canary)}; baseline ${arm(c.baseline)}`;
    }
    return `${t.outcome}: ${t.reason}; ${summary}`;
  }

  /** The model's latest shadow (open or ended), or the latest of one candidate version compared with `baseline`. */
  latestShadow(model: string, version?: number, baseline?: number): TrialRecord | undefined {
    if (version === undefined) return this.store.latestTrial(model, 'shadow');
    return this.store
      .trialsOf(model, 'shadow', version)
      .find((t) => baseline === undefined || t.baselineVersion === baseline);
  }
}

/** What a tally has counted in all: it only grows while one process counts. */
function tallyEvents(t: ShadowTally | CanaryTally): number {
  if ('baseline' in t) return t.baseline.requests + t.canary.requests;
  return t.samples + t.failed + Object.values(t.dropped).reduce((n, d) => n + (d ?? 0), 0);
}
