/**
 * The registry service: stores uploaded model files, moves the active and rollback pointers, and
 * announces every change (watch). It loads nothing itself: each server that serves models follows the
 * announcements (ModelFollower) and reports back what it serves (Fleet), and every pointer change is
 * followed as a rollout until the fleet serves it. Every change, and every failed attempt at one, is
 * appended to the audit log here. Pointer changes are durable in the database before they are
 * announced, so a crash leaves the registry consistent and a restart serves what the database says.
 *
 * It also keeps the evidence promotions are judged on: golden datasets and evaluations of versions on
 * them (run here, on this process's pool), and shadows and canaries of candidate versions (started
 * and ended here, run by every replica, their tallies summed here from the replicas' reports; a canary
 * worse than its margins is rolled back here).
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { SightlineError } from '../errors.js';
import { assertIdentifier, FAMILY_NAMES, isFamilyName, type FamilyName } from '../identifiers.js';
import type { ImagePrep, InferencePool } from '../inference/index.js';
import { parseProfile } from '../monitoring/index.js';
import {
  assertSha256,
  EvidenceStore,
  verifyBlobs,
  type AuditInput,
  type BlobStore,
  type DatasetRecord,
  type EvaluationRecord,
  type HistoryRecord,
  type ModelRecord,
  type ProfileRecord,
  type RegistryStore,
  type TrialRecord,
  type VersionRecord,
} from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import { DatasetLibrary, type DatasetLimits, type DatasetUploadItem } from './datasets.js';
import { PROFILE_KIND } from './drift.js';
import { evaluateVersion, type EvaluationReport } from './evaluation.js';
import { Fleet, type ReplicaModelView, type ReplicaReport } from './fleet.js';
import type { Evidence } from './gates.js';
import type { ModelChange, ModelChangeType } from './model-change.js';
import type { LoadSettings } from './models.js';
import type { Caller, PromoteCheck, PromoteContext } from './promote-check.js';
import { Rollouts, type Rollout, type RolloutOptions } from './rollout.js';
import type { CanaryMargins } from './trial-stats.js';
import { Trials, type CanaryTrial, type CanaryView, type ShadowView } from './trials.js';

export type { Caller, PromoteCheck, PromoteContext } from './promote-check.js';

export interface RegistryOptions {
  /** Largest model file an upload may send. */
  maxUploadBytes: number;
  /** How uploads are test-loaded (on one worker, with one warm-up run). */
  load: LoadSettings;
  /** A replica silent this long leaves the fleet view. */
  replicaTimeoutMs: number;
  /** A rollout whose caller sets no timeout fails when the fleet does not serve it by then. */
  rolloutTimeoutMs: number;
  /** Where registry changes are recorded; none in tools and tests that need no audit. */
  audit?: (entry: AuditInput) => void;
  metrics?: Metrics;
  /** Golden dataset uploads. */
  datasets: DatasetLimits;
  /** How evaluations read images (the serving limits and preprocessing). */
  prep: ImagePrep;
  /** A canary's rollback margins when its promote sets none. */
  canary: CanaryMargins;
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
  /** Every live replica with what it holds of the model, by name. */
  replicas: ReplicaModelView[];
  /** The model's latest rollout since this process started. */
  rollout: Rollout | null;
  /** The running shadow and canary, with their tallies summed over replicas. */
  shadow: ShadowView | null;
  canary: CanaryView | null;
}

/** What a promote may add to moving the pointer. */
export interface PromoteOptions {
  /** Start a canary of the version instead: it serves this share (0-1] of the requests that name no version. */
  canary?: { share: number } & Partial<CanaryMargins>;
  require?: readonly string[];
  force?: boolean;
}

/** The server itself, as a caller: `serve --model` registrations. */
const SERVER = { actor: 'sightline serve', peer: '' } satisfies Caller;

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

export class ModelRegistry {
  readonly fleet: Fleet;
  private readonly rollouts: Rollouts;
  private readonly events = new EventEmitter();
  private readonly lock = new Mutex();
  /** One evaluation at a time: each one loads a version on every worker of the pool. */
  private readonly evaluations = new Mutex();
  private readonly checks: PromoteCheck[] = [];
  private readonly evidenceStore: EvidenceStore;
  private readonly trials: Trials;
  private readonly datasets: DatasetLibrary;

  constructor(
    private readonly store: RegistryStore,
    private readonly blobs: BlobStore,
    /** Test-loads uploads. */
    private readonly pool: InferencePool,
    private readonly opts: RegistryOptions,
    private readonly log: Logger,
  ) {
    this.events.setMaxListeners(0);
    this.fleet = new Fleet({ replicaTimeoutMs: opts.replicaTimeoutMs });
    this.rollouts = new Rollouts(this.fleet, {
      defaultTimeoutMs: opts.rolloutTimeoutMs,
      rollBack: (r) => this.autoRollback(r),
      onEnd: (r) => this.rolloutEnded(r),
    });
    this.evidenceStore = new EvidenceStore(store.database);
    this.trials = new Trials(
      this.evidenceStore,
      (model, version) => this.store.getVersion(model, version)?.classNames ?? [],
    );
    this.datasets = new DatasetLibrary(
      blobs,
      this.evidenceStore,
      (sha) => this.store.isBlobReferenced(sha),
      opts.datasets,
    );
  }

  /** Start-up: removes upload leftovers and verifies every blob against its hash (a mismatch marks the version corrupt: never served). */
  async start(): Promise<void> {
    const swept = await this.blobs.sweepTemp();
    if (swept) this.log.warn({ event: 'registry_tmp_swept', files: swept }, `removed ${swept} unfinished upload(s)`);
    const v = await verifyBlobs(this.store, this.blobs);
    for (const c of v.corrupt)
      this.log.error(
        { event: 'registry_blob_corrupt', model: c.model, version: c.version, reason: c.reason },
        `model ${c.model} version ${c.version} is corrupt and will not be served: ${c.reason}`,
      );
    this.log.info(
      { event: 'registry_verified', versions: v.checked, corrupt: v.corrupt.length },
      `registry: ${v.checked} version(s) verified`,
    );
  }

  /** Adds a check to the one place where a pointer change is decided (see PromoteCheck). */
  addPromoteCheck(check: PromoteCheck): void {
    this.checks.push(check);
  }

  /**
   * Stores an upload durably, validates it (loads in ONNX Runtime on one worker, matches a family,
   * runs one inference), then records the version. Identical bytes already registered for this model
   * return the existing version.
   */
  upload(
    meta: UploadMeta,
    chunks: AsyncIterable<Uint8Array>,
    caller: Caller,
  ): Promise<{ version: VersionRecord; created: boolean }> {
    return this.audited(caller, 'upload', meta.model, async () => {
      assertIdentifier(meta.model);
      if (meta.family && !isFamilyName(meta.family))
        throw new SightlineError(
          'INVALID_INPUT',
          `family must be one of ${FAMILY_NAMES.join(', ')}; got "${meta.family}"`,
        );
      const put = await this.blobs.putStream(chunks, {
        expectedSha256: meta.expectedSha256 || undefined,
        maxBytes: this.opts.maxUploadBytes,
      });
      const known = this.store.findVersionBySha(meta.model, put.sha256);
      if (known) return { version: known, created: false };
      const bytes = new Uint8Array(await this.blobs.read(put.sha256));
      const info = await this.pool
        .probe(bytes, {
          ...this.opts.load,
          family: meta.family,
          labelsText: meta.labels.length ? meta.labels.join('\n') : undefined,
          warmupRuns: 1,
        })
        .catch((e: unknown) => {
          throw new SightlineError('INVALID_INPUT', `the upload is not a servable model: ${(e as Error).message}`, {
            model: meta.model,
          });
        });
      return this.lock.run(async () => {
        const again = this.store.findVersionBySha(meta.model, put.sha256);
        if (again) return { version: again, created: false };
        // A concurrent delete may have removed a blob with the same content meanwhile.
        if (!(await this.blobs.exists(put.sha256)))
          await this.blobs.putStream(oneChunk(bytes), { maxBytes: this.opts.maxUploadBytes });
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
        this.log.info(
          {
            event: 'version_uploaded',
            model: version.model,
            version: version.version,
            sha256: version.sha256,
            sizeBytes: version.sizeBytes,
            family: version.family,
            actor: caller.actor,
          },
          `model ${version.model} version ${version.version} registered`,
        );
        this.emit('version_added', version.model, caller.actor, '', version.version);
        return { version, created: true };
      });
    });
  }

  /** `serve --model FILE`: registers the file if new, and promotes it when the model has no active version. Audited as the server. */
  async registerFile(
    name: string,
    path: string,
    opts: { labelsPath?: string; family?: FamilyName },
  ): Promise<VersionRecord> {
    let bytes: Buffer;
    let labels: string[] = [];
    try {
      bytes = await readFile(path);
      if (opts.labelsPath)
        labels = (await readFile(opts.labelsPath, 'utf8'))
          .split(/\r?\n/)
          .map((l) => l.trim())
          .filter((l) => l !== '');
    } catch (e) {
      throw new SightlineError(
        'NOT_FOUND',
        `cannot read ${(e as NodeJS.ErrnoException).path ?? path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    const meta = {
      model: name,
      notes: `registered from ${basename(path)} by ${SERVER.actor}`,
      labels,
      family: opts.family,
      sourceName: basename(path),
    };
    const { version } = await this.upload(meta, oneChunk(bytes), SERVER);
    const model = this.store.getModel(name)!;
    if (model.activeVersion === null)
      await this.promote(name, version.version, SERVER, 'first version of a model given to sightline serve');
    else if (model.activeVersion !== version.version) {
      this.log.warn(
        { event: 'file_not_active', model: name, version: version.version, active: model.activeVersion },
        `model ${name}: ${basename(path)} is version ${version.version}, but version ${model.activeVersion} stays active; promote it to serve it`,
      );
    }
    return version;
  }

  /**
   * Makes `version` active (the previous active version becomes the rollback target) once every
   * promote check passed (the gates, and in role all the version loading here), announces it and
   * starts its rollout; a shadow or canary that compared a candidate with the old active version ends.
   * Promoting the active version again changes nothing and starts no rollout. With `opts.canary` the
   * pointers stay and a canary of the version starts instead (startCanary).
   */
  promote(
    model: string,
    version: number,
    caller: Caller,
    reason: string,
    rollout: RolloutOptions = {},
    opts: PromoteOptions = {},
  ): Promise<ModelStatusView> {
    if (opts.canary) return this.startCanary(model, version, caller, reason, opts);
    return this.audited(caller, 'promote', `${model}@${version}`, (note) =>
      this.lock.run(async () => {
        const m = this.requireModel(model);
        note(
          await this.precommit(model, version, {
            action: 'promote',
            caller,
            active: m.activeVersion,
            require: opts.require ?? [],
            force: !!opts.force,
          }),
        );
        const change = this.store.promote(model, version, caller.actor, reason);
        if (change.from !== change.to) {
          this.log.info(
            { event: 'model_promoted', model, from: change.from, to: change.to, actor: caller.actor, reason },
            `model ${model}: promoted version ${version}`,
          );
          this.endTrials(this.trials.activeChanged(model, change.to, caller.actor), caller);
          this.startRollout(model, change.to, change.from, 'promote', caller, rollout);
          this.emit('promoted', model, caller.actor, reason);
        }
        return this.status(model);
      }),
    );
  }

  /**
   * A canary: the version serves `share` of the requests that name no version, on every replica,
   * beside the active version; the registry compares the two arms from the replicas' reports and ends
   * the canary itself when the candidate is worse beyond its margins. `promote` without a canary
   * finishes it. The gates apply as to a promote.
   */
  private startCanary(
    model: string,
    version: number,
    caller: Caller,
    reason: string,
    opts: PromoteOptions,
  ): Promise<ModelStatusView> {
    const c = opts.canary!;
    return this.audited(caller, 'canary', `${model}@${version}`, (note) =>
      this.lock.run(async () => {
        const m = this.requireModel(model);
        if (!(c.share > 0 && c.share < 1))
          throw new SightlineError(
            'INVALID_INPUT',
            `a canary serves a share of the requests between 0 and 100 %, not ${c.share * 100} %`,
            { field: 'canary' },
          );
        const baseline = this.requireBaseline(m, version, 'canary');
        const margins: CanaryMargins = {
          minSamples: c.minSamples || this.opts.canary.minSamples,
          p99Margin: c.p99Margin ?? this.opts.canary.p99Margin,
          errorRateMargin: c.errorRateMargin ?? this.opts.canary.errorRateMargin,
        };
        const evidence = await this.precommit(model, version, {
          action: 'canary',
          caller,
          active: baseline,
          require: opts.require ?? [],
          force: !!opts.force,
        });
        const { started, ended } = this.trials.start({
          model,
          kind: 'canary',
          version,
          baselineVersion: baseline,
          share: c.share,
          settings: { ...margins },
          actor: caller.actor,
        });
        if (ended) this.endTrials([ended], caller);
        note(
          `started: ${pct(c.share)} of requests against version ${baseline}, ` +
            `rolled back when its p99 exceeds ${(1 + margins.p99Margin).toFixed(2)} × or its error ` +
            `rate the baseline's + ${pct(margins.errorRateMargin)} over ${margins.minSamples} requests ` +
            `per arm${reason ? `; ${reason}` : ''}${evidence ? `; ${evidence}` : ''}`,
        );
        this.log.info(
          { event: 'canary_started', model, version, baseline, share: c.share, ...margins, actor: caller.actor },
          `model ${model}: canary of version ${version} on ${pct(c.share)} of requests`,
        );
        this.emit('trial_changed', model, caller.actor, reason, started.version);
        return this.status(model);
      }),
    );
  }

  /** Ends a model's running canary by hand: its version stops serving (the active version serves everything). */
  stopCanary(model: string, caller: Caller, reason: string): Promise<ModelStatusView> {
    return this.endOpenTrial(model, 'canary', caller, reason).then(() => this.status(model));
  }

  /** Starts a shadow of `version` on `sample` of the live requests of the model's active version, on every replica. */
  startShadow(model: string, version: number, sample: number, caller: Caller, reason: string): Promise<ShadowView> {
    return this.audited(caller, 'shadow', `${model}@${version}`, (note) =>
      this.lock.run(async () => {
        const m = this.requireModel(model);
        if (!(sample > 0 && sample <= 1))
          throw new SightlineError(
            'INVALID_INPUT',
            `sample must be a share of requests in (0, 1] (0.1: one request in ten), got ${sample}`,
            { field: 'sample' },
          );
        const baseline = this.requireBaseline(m, version, 'shadow');
        const { started, ended } = this.trials.start({
          model,
          kind: 'shadow',
          version,
          baselineVersion: baseline,
          share: sample,
          settings: {},
          actor: caller.actor,
        });
        if (ended) this.endTrials([ended], caller);
        note(`started: ${pct(sample)} of the requests of version ${baseline}${reason ? `; ${reason}` : ''}`);
        this.log.info(
          { event: 'shadow_started', model, version, baseline, sample, actor: caller.actor },
          `model ${model}: shadow of version ${version} on ${pct(sample)} of requests`,
        );
        this.emit('trial_changed', model, caller.actor, reason, version);
        return this.trials.shadowView(started);
      }),
    );
  }

  /** Stops the model's shadow: replicas unload its candidate unless a pointer needs it. Returns its final tallies. */
  stopShadow(model: string, caller: Caller, reason: string): Promise<ShadowView> {
    return this.endOpenTrial(model, 'shadow', caller, reason).then((t) => this.trials.shadowView(t));
  }

  /** The model's running shadow, or its latest one, with the replicas' tallies summed; NOT_FOUND when it never had one. */
  shadowReport(model: string): ShadowView {
    this.requireModel(model);
    const t = this.trials.latestShadow(model);
    if (!t)
      throw new SightlineError(
        'NOT_FOUND',
        `model "${model}" has had no shadow (sightline registry shadow start ${model} VERSION)`,
        { model },
      );
    return this.trials.shadowView(t);
  }

  /**
   * A replica's report: into the fleet view, then its shadow and canary tallies into the database; a
   * canary it shows worse than its margins is rolled back.
   */
  report(r: ReplicaReport, session?: object): void {
    this.fleet.report(r, session);
    let canaries: CanaryTrial[];
    try {
      canaries = this.trials.ingest(r);
    } catch (e) {
      this.log.warn(
        { event: 'trial_tally_refused', replica: r.replica, err: (e as Error).message },
        `replica ${r.replica}: ${(e as Error).message}`,
      );
      return;
    }
    for (const c of canaries) {
      const why = this.trials.verdict(c);
      if (why) void this.rollBackCanary(c, why);
    }
  }

  /** Ends a canary worse than its margins, under the name of whoever started it. */
  private rollBackCanary(c: CanaryTrial, why: string): Promise<void> {
    const caller = { actor: c.startedBy, peer: '' };
    return this.lock
      .run(async () => {
        const ended = this.trials.end(c, caller.actor, 'rolled_back', `rolled back automatically: ${why}`);
        if (!ended) return;
        this.log.warn(
          { event: 'canary_rolled_back', model: c.model, version: c.version, baseline: c.baselineVersion, reason: why },
          `model ${c.model}: canary of version ${c.version} rolled back: ${why}`,
        );
        this.endTrials([ended], caller);
        this.emit('trial_changed', c.model, caller.actor, ended.reason, c.version);
      })
      .catch((e: Error) =>
        this.log.error(
          { event: 'canary_rollback_failed', model: c.model, err: e.message },
          `model ${c.model}: could not end the canary: ${e.message}`,
        ),
      );
  }

  private endOpenTrial(model: string, kind: 'shadow' | 'canary', caller: Caller, reason: string): Promise<TrialRecord> {
    return this.audited(caller, kind, model, (note) =>
      this.lock.run(async () => {
        this.requireModel(model);
        const t = this.trials.open(model, kind);
        if (!t) throw new SightlineError('PRECONDITION', `model ${model} has no ${kind} running`, { model });
        const ended = this.trials.end(t, caller.actor, 'stopped', reason || `stopped by ${caller.actor}`)!;
        note(`version ${t.version}: ${this.trialEnded(ended)}`);
        this.emit('trial_changed', model, caller.actor, reason, t.version);
        return ended;
      }),
    );
  }

  /** Audits trials that ended as a side effect of another change (action shadow or canary, their outcome and reason). */
  private endTrials(ended: readonly TrialRecord[], caller: Caller): void {
    for (const t of ended)
      this.record(
        caller,
        t.kind,
        `${t.model}@${t.version}`,
        t.outcome === 'rolled_back' ? 'error' : 'ok',
        this.trialEnded(t),
      );
  }

  /** An ended trial in words, with its final tallies (Trials.describeEnded); counts an ended canary. */
  private trialEnded(t: TrialRecord): string {
    if (t.kind === 'canary') this.opts.metrics?.countCanary(t.model, t.outcome ?? 'stopped');
    return this.trials.describeEnded(t);
  }

  /** The active version a shadow or canary of `version` is compared with; PRECONDITION when there is none to compare with. */
  private requireBaseline(m: ModelRecord, version: number, kind: 'shadow' | 'canary'): number {
    const rec = this.requireVersion(m.name, version);
    if (rec.state === 'corrupt')
      throw new SightlineError(
        'PRECONDITION',
        `model ${m.name} version ${version} is corrupt (${rec.corruptReason ?? 'blob verification failed'}) and cannot be served`,
      );
    if (m.activeVersion === null)
      throw new SightlineError(
        'PRECONDITION',
        `model ${m.name} has no active version to compare a ${kind} with; promote one first`,
        { model: m.name },
      );
    if (kind === 'canary' && m.activeVersion === version)
      throw new SightlineError('PRECONDITION', `model ${m.name} version ${version} is already active`, {
        model: m.name,
        version,
      });
    return m.activeVersion;
  }

  /** Stores a golden dataset (YOLO layout) as a new version of `name`, or returns the version with the same content. */
  uploadDataset(
    meta: { name: string; notes: string },
    items: AsyncIterable<DatasetUploadItem>,
    caller: Caller,
  ): Promise<{ dataset: DatasetRecord; created: boolean }> {
    return this.audited(caller, 'dataset', meta.name, async (note) => {
      const r = await this.datasets.upload({ ...meta, actor: caller.actor }, items);
      note(
        `${r.created ? 'uploaded' : 'already stored'}: version ${r.dataset.version}, ` +
          `${r.dataset.images} images, ${r.dataset.boxes} boxes, sha256 ${r.dataset.sha256}`,
      );
      this.log.info(
        {
          event: 'dataset_uploaded',
          dataset: r.dataset.name,
          version: r.dataset.version,
          images: r.dataset.images,
          created: r.created,
          actor: caller.actor,
        },
        `dataset ${r.dataset.name} version ${r.dataset.version} stored`,
      );
      return r;
    });
  }

  /** Every dataset version (of one name, when given). */
  listDatasets(name?: string): DatasetRecord[] {
    return this.evidenceStore.listDatasets(name);
  }

  /**
   * Scores a version on a golden dataset version (0: its latest) with the serving pipeline on this
   * process's pool, and stores the result with the version.
   */
  evaluate(
    model: string,
    version: number,
    dataset: string,
    datasetVersion: number,
    caller: Caller,
    signal: AbortSignal,
  ): Promise<EvaluationRecord<EvaluationReport>> {
    return this.audited(caller, 'evaluate', `${model}@${version}`, (note) =>
      this.evaluations.run(async () => {
        this.requireModel(model);
        const v = this.requireVersion(model, version);
        const d = this.evidenceStore.getDataset(dataset, datasetVersion);
        const bytes = new Uint8Array(await this.readBlob(v.sha256));
        const report = await evaluateVersion(
          { pool: this.pool, blobs: this.blobs, load: this.opts.load, prep: this.opts.prep },
          v,
          bytes,
          d,
          this.evidenceStore.datasetFiles(d.name, d.version),
          signal,
        );
        const rec = this.evidenceStore.insertEvaluation({
          model,
          version,
          dataset: d.name,
          datasetVersion: d.version,
          createdBy: caller.actor,
          report,
        });
        note(
          `${d.name}@${d.version}: map50 ${report.map50.toFixed(3)}, map50_95 ` +
            `${report.map5095.toFixed(3)}, p99 ${report.latency.p99Ms.toFixed(1)} ms over ` +
            `${report.images} images`,
        );
        this.log.info(
          {
            event: 'version_evaluated',
            model,
            version,
            dataset: d.name,
            datasetVersion: d.version,
            map50: report.map50,
            map5095: report.map5095,
            p99Ms: report.latency.p99Ms,
            seconds: report.seconds,
          },
          `model ${model} version ${version} evaluated on ${d.name}@${d.version}`,
        );
        return rec;
      }),
    );
  }

  /** Evaluations of a model's versions (or of one version), newest first. */
  evaluationsOf(model: string, version?: number): EvaluationRecord<EvaluationReport>[] {
    this.requireModel(model);
    return this.evidenceStore.evaluations<EvaluationReport>(model, version);
  }

  /** Everything stored that a promote of `version` is judged on (gates.ts). */
  evidence(model: string, version: number): Evidence {
    const m = this.requireModel(model);
    const active = m.activeVersion;
    const latest = this.evidenceStore.evaluations<EvaluationReport>(model, version)[0];
    const activeEval =
      latest && active !== null
        ? this.evidenceStore
            .evaluations<EvaluationReport>(model, active)
            .find((e) => e.dataset === latest.dataset && e.datasetVersion === latest.datasetVersion)
        : undefined;
    const shadow = active === null ? undefined : this.trials.latestShadow(model, version, active);
    return {
      model,
      version,
      active,
      evaluation: latest
        ? {
            dataset: latest.dataset,
            datasetVersion: latest.datasetVersion,
            candidate: latest.report,
            active: activeEval?.report ?? null,
          }
        : null,
      shadow: shadow
        ? { trialId: shadow.id, running: shadow.endedAt === null, summary: this.trials.shadowView(shadow).summary }
        : null,
    };
  }

  /** Swaps the active version and the rollback target, as a rollout like promote(). */
  rollback(model: string, caller: Caller, reason: string, rollout: RolloutOptions = {}): Promise<ModelStatusView> {
    return this.audited(caller, 'rollback', model, () =>
      this.lock.run(async () => {
        const m = this.requireModel(model);
        if (m.rollbackVersion === null)
          throw new SightlineError('PRECONDITION', `model ${model} has no rollback target`);
        await this.precommit(model, m.rollbackVersion, {
          action: 'rollback',
          caller,
          active: m.activeVersion,
          require: [],
          force: false,
        });
        const change = this.store.rollback(model, caller.actor, reason);
        this.log.info(
          { event: 'model_rolled_back', model, from: change.from, to: change.to, actor: caller.actor, reason },
          `model ${model}: rolled back to version ${change.to}`,
        );
        this.endTrials(this.trials.activeChanged(model, change.to, caller.actor), caller);
        this.startRollout(model, change.to, change.from, 'rollback', caller, rollout);
        this.emit('rolled_back', model, caller.actor, reason);
        return this.status(model);
      }),
    );
  }

  /** Deletes a version that no pointer references; its blob goes too when no other version uses it. Replicas unload it. */
  deleteVersion(model: string, version: number, caller: Caller, reason: string): Promise<{ blobRemoved: boolean }> {
    return this.audited(caller, 'delete', `${model}@${version}`, () =>
      this.lock.run(async () => {
        this.requireVersion(model, version);
        const r = this.store.deleteVersion(model, version, caller.actor, reason);
        if (!r.blobStillReferenced) await this.blobs.remove(r.sha256);
        this.log.info(
          {
            event: 'version_deleted',
            model,
            version,
            actor: caller.actor,
            reason,
            blobRemoved: !r.blobStillReferenced,
          },
          `model ${model} version ${version} deleted`,
        );
        this.emit('version_deleted', model, caller.actor, reason, version);
        return { blobRemoved: !r.blobStillReferenced };
      }),
    );
  }

  status(model: string): ModelStatusView {
    const m = this.requireModel(model);
    const shadow = this.trials.open(model, 'shadow');
    const canary = this.trials.open(model, 'canary') as CanaryTrial | undefined;
    return {
      model,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      replicas: this.fleet.forModel(model),
      rollout: this.rollouts.latest(model),
      shadow: shadow ? this.trials.shadowView(shadow) : null,
      canary: canary ? this.trials.canaryView(canary) : null,
    };
  }

  /** Follows a model's rollout (id 0: the latest); see Rollouts.watch. */
  watchRollout(model: string, id: number, fn: (r: Rollout) => void): () => void {
    this.requireModel(model);
    return this.rollouts.watch(model, id, fn);
  }

  /**
   * The plain bytes of a registered version's file, verified against its sha256 (for replicas, and
   * for this process's own follower). A blob that fails verification marks its versions corrupt.
   */
  async readBlob(sha256: string): Promise<Buffer> {
    assertSha256(sha256);
    if (!this.store.isBlobReferenced(sha256))
      throw new SightlineError('NOT_FOUND', `no registered version or dataset file has sha256 ${sha256}`);
    try {
      return await this.blobs.read(sha256);
    } catch (e) {
      if (e instanceof SightlineError && e.fields.corrupt === true) {
        for (const v of this.store.allVersions())
          if (v.sha256 === sha256) this.store.markCorrupt(v.model, v.version, String(e.fields.reason ?? e.message));
      }
      throw e;
    }
  }

  /** A version's stored drift reference profile; NOT_FOUND when it has none yet. */
  getProfile(model: string, version: number): ProfileRecord {
    this.requireModel(model);
    this.requireVersion(model, version);
    const p = this.store.getProfile(model, version, PROFILE_KIND);
    if (!p)
      throw new SightlineError('NOT_FOUND', `model ${model} version ${version} has no drift reference profile yet`, {
        model,
        version,
      });
    return p;
  }

  /** Stores a version's drift reference profile (checked to be one) sent by a replica or a client. */
  putProfile(model: string, version: number, body: unknown, caller: Caller): Promise<ProfileRecord> {
    return this.audited(caller, 'profile', `${model}@${version}`, async () => {
      this.requireModel(model);
      this.requireVersion(model, version);
      return this.profileStore(caller.actor).putProfile(model, version, PROFILE_KIND, parseProfile(body));
    });
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
        this.log.info(
          { event: 'profile_stored', model, version, actor },
          `model ${model} version ${version}: drift reference profile stored`,
        );
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

  /** One snapshot change per model, then `synced`, then every change until the returned function is called. */
  watch(listener: (c: ModelChange) => void, models: readonly string[] = []): () => void {
    const wanted = (name: string) => models.length === 0 || models.includes(name);
    for (const m of this.store.listModels()) if (wanted(m.name)) listener(this.change('snapshot', m, 'registry', ''));
    listener(SYNCED());
    const on = (c: ModelChange) => wanted(c.model) && listener(c);
    this.events.on('change', on);
    return () => this.events.off('change', on);
  }

  close(): void {
    this.rollouts.close();
    this.fleet.close();
  }

  /**
   * The one place a pointer change (or a canary) is decided: the version must be servable, then every
   * added check must pass, in the order they were added. Returns what the checks said, for the audit.
   */
  private async precommit(model: string, version: number, ctx: PromoteContext): Promise<string> {
    const rec = this.requireVersion(model, version);
    if (rec.state === 'corrupt')
      throw new SightlineError(
        'PRECONDITION',
        `model ${model} version ${version} is corrupt (${rec.corruptReason ?? 'blob verification failed'}) and cannot be served`,
      );
    const notes: string[] = [];
    for (const check of this.checks) {
      const note = await check(model, version, ctx);
      if (note) notes.push(note);
    }
    return notes.join('; ');
  }

  private startRollout(
    model: string,
    to: number,
    from: number | null,
    action: 'promote' | 'rollback',
    caller: Caller,
    o: RolloutOptions,
  ): void {
    this.rollouts.start(model, to, from, action, caller, o);
  }

  private async autoRollback(r: Rollout): Promise<number> {
    const m = this.requireModel(r.model);
    if (m.activeVersion !== r.version)
      throw new SightlineError('PRECONDITION', `model ${r.model} no longer has version ${r.version} active`);
    await this.rollback(
      r.model,
      r.caller,
      `automatic rollback: the rollout of version ${r.version} failed: ${r.reason}`,
    );
    return this.rollouts.latest(r.model)!.id;
  }

  private rolloutEnded(r: Rollout): void {
    const seconds = ((r.endedAt ?? r.startedAt) - r.startedAt) / 1000;
    this.log[r.phase === 'succeeded' ? 'info' : 'warn'](
      {
        event: 'rollout_ended',
        model: r.model,
        version: r.version,
        action: r.action,
        phase: r.phase,
        ready: r.ready,
        total: r.total,
        seconds,
        reason: r.reason,
      },
      `model ${r.model}: rollout of version ${r.version} ${r.phase}: ${r.reason}`,
    );
    this.opts.metrics?.observeRollout(r.model, r.phase, seconds);
    this.record(
      r.caller,
      'rollout',
      `${r.model}@${r.version}`,
      r.phase === 'succeeded' ? 'ok' : 'error',
      `${r.phase}: ${r.reason}`,
    );
  }

  /**
   * Runs a change and appends its outcome to the audit log: a failure with its message, a success with
   * what the change noted (the evidence a promote was judged on, a trial's terms).
   */
  private async audited<T>(
    caller: Caller,
    action: string,
    target: string,
    fn: (note: (text: string) => void) => Promise<T>,
  ): Promise<T> {
    let reason = '';
    try {
      const v = await fn((text) => (reason = text));
      this.record(caller, action, target, 'ok', reason);
      return v;
    } catch (e) {
      this.record(caller, action, target, 'error', (e as Error).message);
      throw e;
    }
  }

  private record(caller: Caller, action: string, target: string, outcome: 'ok' | 'error', reason = ''): void {
    this.opts.audit?.({ principal: caller.actor, peer: caller.peer, action, target, outcome, reason });
  }

  private emit(
    type: ModelChangeType,
    model: string,
    actor: string,
    reason: string,
    version: number | null = null,
  ): void {
    this.events.emit('change', this.change(type, this.store.getModel(model)!, actor, reason, version));
  }

  private change(
    type: ModelChangeType,
    m: ModelRecord,
    actor: string,
    reason: string,
    version: number | null = null,
  ): ModelChange {
    const versions = this.store.listVersions(m.name);
    const sha = (v: number | null) => (v === null ? null : (versions.find((x) => x.version === v)?.sha256 ?? null));
    return {
      type,
      model: m.name,
      activeVersion: m.activeVersion,
      rollbackVersion: m.rollbackVersion,
      version,
      versions: versions.map((v) => v.version),
      activeSha256: sha(m.activeVersion),
      rollbackSha256: sha(m.rollbackVersion),
      ...this.trials.refs(m.name),
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

/** The end of a watch's snapshot. */
const SYNCED = (): ModelChange => ({
  type: 'synced',
  model: '',
  activeVersion: null,
  rollbackVersion: null,
  version: null,
  versions: [],
  activeSha256: null,
  rollbackSha256: null,
  shadow: null,
  canary: null,
  actor: 'registry',
  reason: '',
  at: new Date().toISOString(),
});

async function* oneChunk(b: Uint8Array): AsyncIterable<Uint8Array> {
  yield b;
}

const pct = (share: number) => `${+(share * 100).toFixed(2)} %`;
