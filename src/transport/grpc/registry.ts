/** sightline.v1.Registry handlers: adapters from gRPC calls to the ModelRegistry. */
import type {
  Metadata,
  sendUnaryData,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js';
import { principalOf } from './auth.js';
import { splitHeadStream } from './head-stream.js';
import type { FamilyName } from '../../identifiers.js';
import type { ProfileRecord, VersionRecord } from '../../registry/index.js';
import type {
  Caller,
  CanaryTally,
  CanaryView,
  DatasetRecord,
  DatasetUploadItem,
  EvaluationRecord,
  EvaluationReport,
  ModelChange,
  ModelRegistry,
  ModelStatusView,
  PromoteOptions,
  ReplicaModelReport,
  ReplicaReport,
  Rollout,
  RolloutOptions,
  RolloutPhase,
  ShadowTally,
  ShadowView,
  TokenDigest,
  TrialRecord,
  TrialRef,
  TrialTally,
  VersionState,
} from '../../serving/index.js';
import {
  ModelEventType,
  RolloutPhase as ProtoRolloutPhase,
  TrialOutcome,
  VersionState as ProtoVersionState,
  type BlobChunk,
  type CanaryStatus,
  type Dataset,
  type DatasetUploadChunk,
  type Evaluation,
  type PromoteRequest,
  type ShadowReport,
  type Trial,
  type TrialRef as TrialRefMessage,
  type FetchBlobRequest,
  type LoadedVersion,
  type ModelEvent,
  type ModelStatus,
  type ModelVersion,
  type RegistryServer,
  type ReplicaReport as ReplicaReportMessage,
  type ReportReplicaResponse,
  type Rollout as RolloutMessage,
  type RolloutOptions as RolloutOptionsMessage,
  type StoredProfile,
  type UploadChunk,
  type UploadMetadata,
  type WatchModelsRequest,
  type WatchRolloutRequest,
} from '../../generated/sightline/v1/registry.js';
import { SightlineError } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';
import { VERSION_STATE } from './registry-peer.js';
import { signalFor } from './deadline.js';
import { toStatus } from './status.js';

const EVENT: Record<ModelChange['type'], ModelEventType> = {
  snapshot: ModelEventType.MODEL_EVENT_TYPE_SNAPSHOT,
  synced: ModelEventType.MODEL_EVENT_TYPE_SYNCED,
  promoted: ModelEventType.MODEL_EVENT_TYPE_PROMOTED,
  rolled_back: ModelEventType.MODEL_EVENT_TYPE_ROLLED_BACK,
  version_added: ModelEventType.MODEL_EVENT_TYPE_VERSION_ADDED,
  version_deleted: ModelEventType.MODEL_EVENT_TYPE_VERSION_DELETED,
  profile_updated: ModelEventType.MODEL_EVENT_TYPE_PROFILE_UPDATED,
  trial_changed: ModelEventType.MODEL_EVENT_TYPE_TRIAL_CHANGED,
};

const OUTCOME: Record<NonNullable<TrialRecord['outcome']>, TrialOutcome> = {
  stopped: TrialOutcome.TRIAL_OUTCOME_STOPPED,
  promoted: TrialOutcome.TRIAL_OUTCOME_PROMOTED,
  rolled_back: TrialOutcome.TRIAL_OUTCOME_ROLLED_BACK,
  superseded: TrialOutcome.TRIAL_OUTCOME_SUPERSEDED,
};

const PHASE: Record<RolloutPhase, ProtoRolloutPhase> = {
  in_progress: ProtoRolloutPhase.ROLLOUT_PHASE_IN_PROGRESS,
  succeeded: ProtoRolloutPhase.ROLLOUT_PHASE_SUCCEEDED,
  failed: ProtoRolloutPhase.ROLLOUT_PHASE_FAILED,
  superseded: ProtoRolloutPhase.ROLLOUT_PHASE_SUPERSEDED,
};

const FROM_VERSION_STATE = new Map(Object.entries(VERSION_STATE).map(([k, v]) => [v, k as VersionState]));

export const toEvaluation = (e: EvaluationRecord<EvaluationReport>): Evaluation => {
  const r = e.report;
  return {
    model: e.model,
    version: e.version,
    dataset: e.dataset,
    datasetVersion: e.datasetVersion,
    datasetSha256: r.datasetSha256,
    createdAt: e.createdAt,
    createdBy: e.createdBy,
    images: r.images,
    boxes: r.boxes,
    map50: r.map50,
    map5095: r.map5095,
    precision: r.precision,
    recall: r.recall,
    perClass: r.perClass.map((c) => ({
      classId: c.classId,
      name: c.name,
      ap50: c.ap50,
      ap5095: c.ap5095,
      boxes: c.boxes,
    })),
    latencyP50Ms: r.latency.p50Ms,
    latencyP99Ms: r.latency.p99Ms,
    latencyMeanMs: r.latency.meanMs,
    provider: r.provider,
    seconds: r.seconds,
  };
};

/** The latest evaluation of the version on each dataset version, newest first. */
const latestPerDataset = (all: readonly EvaluationRecord<EvaluationReport>[], version: number): Evaluation[] => {
  const seen = new Set<string>();
  return all
    .filter(
      (e) =>
        e.version === version &&
        !seen.has(`${e.dataset}@${e.datasetVersion}`) &&
        seen.add(`${e.dataset}@${e.datasetVersion}`),
    )
    .map(toEvaluation);
};

export const toDataset = (d: DatasetRecord, created = false): Dataset => ({
  name: d.name,
  version: d.version,
  sha256: d.sha256,
  images: d.images,
  boxes: d.boxes,
  sizeBytes: BigInt(d.sizeBytes),
  classNames: [...d.classNames],
  createdAt: d.createdAt,
  createdBy: d.createdBy,
  notes: d.notes,
  created,
});

const toTrial = (t: TrialRecord): Trial => ({
  id: BigInt(t.id),
  model: t.model,
  version: t.version,
  baselineVersion: t.baselineVersion,
  share: t.share,
  startedAt: t.startedAt,
  startedBy: t.startedBy,
  outcome: t.outcome ? OUTCOME[t.outcome] : TrialOutcome.TRIAL_OUTCOME_RUNNING,
  endedAt: t.endedAt ?? '',
  reason: t.reason,
});

/** A measurement, or undefined (absent on the wire) when there is none: never 0 for "none". */
const measured = (x: number | null | undefined) => (x == null || !Number.isFinite(x) ? undefined : x);

export const toShadowReport = (v: ShadowView): ShadowReport => {
  const s = v.summary;
  return {
    trial: toTrial(v.trial),
    replicas: v.replicas,
    samples: BigInt(s.samples),
    failed: BigInt(s.failed),
    dropped: Object.fromEntries(Object.entries(s.dropped).map(([k, n]) => [k, BigInt(n ?? 0)])),
    agreementMean: measured(s.agreementMean),
    agreementP10: measured(s.agreementP10),
    confidenceShift: measured(s.confidenceShift),
    classes: s.classes.map((c) => ({
      classId: c.classId,
      name: c.name,
      matched: BigInt(c.matched),
      missing: BigInt(c.missing),
      extra: BigInt(c.extra),
    })),
    latencyPairs: BigInt(s.latency?.pairs ?? 0),
    activeLatencyMeanMs: measured(s.latency?.activeMeanMs),
    candidateLatencyMeanMs: measured(s.latency?.candidateMeanMs),
    latencyRatio: measured(s.latency?.ratio),
    activeLatencyP99Ms: measured(s.latency?.activeP99Ms),
    candidateLatencyP99Ms: measured(s.latency?.candidateP99Ms),
  };
};

const toCanaryStatus = (v: CanaryView): CanaryStatus => {
  const arm = (a: CanaryView['summary']['canary']) => ({
    requests: BigInt(a.requests),
    errors: BigInt(a.errors),
    errorRate: a.errorRate,
    p50Ms: measured(a.p50Ms),
    p99Ms: measured(a.p99Ms),
  });
  return {
    trial: toTrial(v.trial),
    replicas: v.replicas,
    canary: arm(v.summary.canary),
    baseline: arm(v.summary.baseline),
    minSamples: v.trial.settings.minSamples,
    p99Margin: v.trial.settings.p99Margin,
    errorRateMargin: v.trial.settings.errorRateMargin,
  };
};

const toTrialRef = (t: TrialRef | null): TrialRefMessage | undefined =>
  t ? { id: BigInt(t.id), version: t.version, share: t.share } : undefined;

export const toModelVersion = (
  v: VersionRecord,
  created = false,
  evaluations: readonly EvaluationRecord<EvaluationReport>[] = [],
): ModelVersion => ({
  model: v.model,
  version: v.version,
  sha256: v.sha256,
  sizeBytes: BigInt(v.sizeBytes),
  sourceName: v.sourceName ?? '',
  createdAt: v.createdAt,
  family: v.family,
  inputWidth: v.inputWidth,
  inputHeight: v.inputHeight,
  classNames: [...v.classNames],
  onnxMetadata: { ...v.onnxMetadata },
  notes: v.notes,
  corrupt: v.state === 'corrupt',
  corruptReason: v.corruptReason ?? '',
  created,
  evaluations: latestPerDataset(evaluations, v.version),
});

const iso = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString());

const toLoaded = (m: ReplicaModelReport): LoadedVersion[] =>
  m.versions.map((v) => ({
    version: v.version,
    state: VERSION_STATE[v.state],
    error: v.error ?? '',
    inFlight: v.inflight,
    provider: v.provider,
  }));

const toRollout = (r: Rollout): RolloutMessage => ({
  id: BigInt(r.id),
  model: r.model,
  version: r.version,
  fromVersion: r.fromVersion ?? 0,
  action: r.action,
  actor: r.caller.actor,
  phase: PHASE[r.phase],
  ready: r.ready,
  total: r.total,
  replicas: r.replicas.map((p) => ({
    replica: p.replica,
    state: p.state ? VERSION_STATE[p.state] : ProtoVersionState.VERSION_STATE_UNSPECIFIED,
    error: p.error ?? '',
    servingVersion: p.servingVersion ?? 0,
  })),
  reason: r.reason,
  startedAt: iso(r.startedAt),
  deadline: iso(r.deadline),
  endedAt: iso(r.endedAt),
  autoRollback: r.autoRollback,
  rolledBackBy: BigInt(r.rolledBackBy ?? 0),
});

const toModelStatus = (s: ModelStatusView): ModelStatus => ({
  model: s.model,
  activeVersion: s.activeVersion ?? 0,
  rollbackVersion: s.rollbackVersion ?? 0,
  replicas: s.replicas.map((r) => ({
    replica: r.replica,
    servingVersion: r.servingVersion ?? 0,
    activeVersion: r.activeVersion ?? 0,
    versions: toLoaded(r),
    reportedAt: iso(r.reportedAt),
  })),
  rollout: s.rollout ? toRollout(s.rollout) : undefined,
  shadow: s.shadow ? toShadowReport(s.shadow) : undefined,
  canary: s.canary ? toCanaryStatus(s.canary) : undefined,
});

const toModelEvent = (c: ModelChange): ModelEvent => ({
  type: EVENT[c.type],
  model: c.model,
  activeVersion: c.activeVersion ?? 0,
  rollbackVersion: c.rollbackVersion ?? 0,
  version: c.version ?? 0,
  versions: [...c.versions],
  activeSha256: c.activeSha256 ?? '',
  rollbackSha256: c.rollbackSha256 ?? '',
  shadow: toTrialRef(c.shadow),
  canary: toTrialRef(c.canary),
  actor: c.actor,
  reason: c.reason,
  at: c.at,
});

const fromRolloutOptions = (o: RolloutOptionsMessage | undefined): RolloutOptions => ({
  timeoutMs: o?.timeoutMs ?? 0,
  autoRollback: o?.autoRollback ?? false,
});

/** INVALID_INPUT naming a field of the request and the values it allows, unless `ok`. */
function check(ok: boolean, field: string, allowed: string, got: number): void {
  if (!ok) throw new SightlineError('INVALID_INPUT', `${field} must be ${allowed}, got ${got}`, { field });
}

/** A canary's options as sent: every number in its range (NaN fails every comparison, so it is refused too). */
function fromPromoteRequest(r: PromoteRequest): PromoteOptions {
  const c = r.canary;
  if (c) {
    check(
      c.percent > 0 && c.percent < 100,
      'canary.percent',
      'above 0 and below 100 (a percent of requests)',
      c.percent,
    );
    if (c.p99Margin !== undefined)
      check(
        c.p99Margin >= 0 && Number.isFinite(c.p99Margin),
        'canary.p99_margin',
        'a finite number >= 0 (0.2: roll back above 1.2 × the baseline p99), or absent for canary.p99Margin',
        c.p99Margin,
      );
    if (c.errorRateMargin !== undefined)
      check(
        c.errorRateMargin >= 0 && c.errorRateMargin <= 1,
        'canary.error_rate_margin',
        'in [0, 1] (0.01: one percentage point above the baseline error rate), or absent for canary.errorRateMargin',
        c.errorRateMargin,
      );
  }
  return {
    require: r.gates?.require ?? [],
    force: r.gates?.force ?? false,
    ...(c
      ? {
          canary: {
            share: c.percent / 100,
            minSamples: c.minSamples || undefined,
            p99Margin: c.p99Margin,
            errorRateMargin: c.errorRateMargin,
          },
        }
      : {}),
  };
}

function fromTally(t: ReplicaReportMessage['trials'][number]): TrialTally {
  let body: unknown;
  try {
    body = JSON.parse(t.tallyJson) as unknown;
  } catch {
    throw new SightlineError('INVALID_INPUT', `trial ${t.trialId}: tally_json is not JSON`);
  }
  const base = { trialId: Number(t.trialId), model: t.model, incarnation: t.incarnation };
  if (t.kind === 'shadow') return { ...base, kind: 'shadow', shadow: body as ShadowTally };
  if (t.kind === 'canary') return { ...base, kind: 'canary', canary: body as CanaryTally };
  throw new SightlineError('INVALID_INPUT', `trial ${t.trialId}: kind must be shadow or canary, got "${t.kind}"`);
}

function fromReport(m: ReplicaReportMessage): ReplicaReport {
  if (!m.replica) throw new SightlineError('INVALID_INPUT', 'a replica report names its replica');
  return {
    replica: m.replica,
    // Checked field by field when the registry sums them (trial-stats.ts parseTally).
    trials: m.trials.map(fromTally),
    models: m.models.map((x) => ({
      model: x.model,
      servingVersion: x.servingVersion || null,
      activeVersion: x.activeVersion || null,
      versions: x.versions.map((v) => ({
        version: v.version,
        state: FROM_VERSION_STATE.get(v.state) ?? 'loading',
        error: v.error || null,
        inflight: v.inFlight,
        provider: v.provider,
      })),
    })),
  };
}

const BLOB_CHUNK_BYTES = 1024 * 1024;

/** Who asks, for the history and the audit log: the authenticated principal (or the peer when auth is off) and the peer. */
export const callerOf = (call: { getPeer(): string; metadata: Metadata }): Caller => {
  const p = principalOf(call);
  return { actor: p === 'anonymous' ? `anonymous@${call.getPeer()}` : p, peer: call.getPeer() };
};

/** A dataset upload's messages after the metadata: a path starts a file, data continues it. */
function datasetItem(m: DatasetUploadChunk): DatasetUploadItem {
  if (m.path !== undefined) return { kind: 'file', path: m.path };
  return { kind: 'data', bytes: m.data ?? new Uint8Array(0) };
}

/** Turns the upload stream into its metadata and an async iterable of its data chunks. */
async function splitUpload(
  call: ServerReadableStream<UploadChunk, ModelVersion>,
): Promise<{ meta: UploadMetadata; chunks: AsyncIterable<Uint8Array> }> {
  const { head, rest } = await splitHeadStream(
    call as AsyncIterable<UploadChunk>,
    (m) => m.metadata,
    (m) => m.data ?? new Uint8Array(0),
    { message: 'UploadChunk', head: 'metadata (model name)' },
  );
  return { meta: head, chunks: rest };
}

/** A unary handler from a function returning the response (or a promise of it); errors become statuses. */
export function unary<Req, Res>(log: Logger, fn: (req: Req, call: ServerUnaryCall<Req, Res>) => Res | Promise<Res>) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => fn(call.request, call))
      .then(
        (r) => cb(null, r),
        (e: unknown) => cb(toStatus(e, log)),
      );
  };
}

function toStoredProfile(p: ProfileRecord): StoredProfile {
  return { model: p.model, version: p.version, storedAt: p.createdAt, profileJson: JSON.stringify(p.body) };
}

function parseProfileJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new SightlineError('INVALID_INPUT', `profile_json is not JSON: ${(e as Error).message}`);
  }
}

export interface RegistryHandlers {
  impl: RegistryServer;
  /** Ends every WatchModels, WatchRollout and ReportReplica stream (they never end on their own): part of shutdown. */
  endWatches(): void;
}

/** `tokenDigests`: what SyncTokens sends replicas (AccessControl's view of the token database). */
export function registryHandlers(
  registry: ModelRegistry,
  log: Logger,
  tokenDigests: () => TokenDigest[],
): RegistryHandlers {
  const watches = new Set<ServerWritableStream<unknown, unknown>>();
  /** Open ReportReplica streams, answered at shutdown so the server can drain. */
  const reporters = new Set<() => void>();
  /** Keeps a server stream in `watches` until it ends, and stops its source then. */
  const follow = (call: ServerWritableStream<unknown, unknown>, stop: () => void) => {
    watches.add(call);
    const end = () => {
      stop();
      watches.delete(call);
    };
    call.on('cancelled', end);
    call.on('close', end);
    call.on('finish', end);
  };
  const impl: RegistryServer = {
    uploadVersion(call: ServerReadableStream<UploadChunk, ModelVersion>, cb: sendUnaryData<ModelVersion>) {
      splitUpload(call)
        .then(({ meta, chunks }) =>
          registry.upload(
            {
              model: meta.model,
              notes: meta.notes,
              expectedSha256: meta.expectedSha256 || undefined,
              labels: meta.labels,
              family: (meta.family || undefined) as FamilyName | undefined,
              sourceName: meta.sourceName || null,
            },
            chunks,
            callerOf(call),
          ),
        )
        .then(
          ({ version, created }) => cb(null, toModelVersion(version, created)),
          (e: unknown) => cb(toStatus(e, log)),
        );
    },
    listModels: unary(log, () => ({
      models: registry.listModels().map((m) => ({
        name: m.name,
        activeVersion: m.activeVersion ?? 0,
        rollbackVersion: m.rollbackVersion ?? 0,
        versionCount: m.versionCount,
        createdAt: m.createdAt,
      })),
    })),
    listVersions: unary(log, (req) => {
      const evaluations = registry.evaluationsOf(req.model);
      return { versions: registry.listVersions(req.model).map((v) => toModelVersion(v, false, evaluations)) };
    }),
    getVersion: unary(log, (req) =>
      toModelVersion(
        registry.getVersion(req.model, req.version),
        false,
        registry.evaluationsOf(req.model, req.version),
      ),
    ),
    getModelStatus: unary(log, (req) => toModelStatus(registry.status(req.model))),
    promote: unary(log, async (req, call) =>
      toModelStatus(
        await registry.promote(
          req.model,
          req.version,
          callerOf(call),
          req.reason,
          fromRolloutOptions(req.rollout),
          fromPromoteRequest(req),
        ),
      ),
    ),
    uploadDataset(call: ServerReadableStream<DatasetUploadChunk, Dataset>, cb: sendUnaryData<Dataset>) {
      splitHeadStream(call as AsyncIterable<DatasetUploadChunk>, (m) => m.metadata, datasetItem, {
        message: 'DatasetUploadChunk',
        head: 'metadata (dataset name)',
      })
        .then(({ head, rest }) => registry.uploadDataset({ name: head.name, notes: head.notes }, rest, callerOf(call)))
        .then(
          ({ dataset, created }) => cb(null, toDataset(dataset, created)),
          (e: unknown) => cb(toStatus(e, log)),
        );
    },
    listDatasets: unary(log, (req) => ({
      datasets: registry.listDatasets(req.name || undefined).map((d) => toDataset(d)),
    })),
    evaluate: unary(log, async (req, call) => {
      const { signal, dispose } = signalFor(call);
      try {
        return toEvaluation(
          await registry.evaluate(req.model, req.version, req.dataset, req.datasetVersion, callerOf(call), signal),
        );
      } finally {
        dispose();
      }
    }),
    startShadow: unary(log, async (req, call) =>
      toShadowReport(await registry.startShadow(req.model, req.version, req.sample, callerOf(call), req.reason)),
    ),
    stopShadow: unary(log, async (req, call) =>
      toShadowReport(await registry.stopShadow(req.model, callerOf(call), req.reason)),
    ),
    getShadowReport: unary(log, (req) => toShadowReport(registry.shadowReport(req.model))),
    stopCanary: unary(log, async (req, call) =>
      toModelStatus(await registry.stopCanary(req.model, callerOf(call), req.reason)),
    ),
    rollback: unary(log, async (req, call) =>
      toModelStatus(await registry.rollback(req.model, callerOf(call), req.reason, fromRolloutOptions(req.rollout))),
    ),
    deleteVersion: unary(log, (req, call) =>
      registry.deleteVersion(req.model, req.version, callerOf(call), req.reason),
    ),
    getHistory: unary(log, (req) => ({
      entries: registry.history(req.model, req.limit || undefined).map((h) => ({
        id: BigInt(h.id),
        at: h.at,
        actor: h.actor,
        action: h.action,
        fromVersion: h.fromVersion ?? 0,
        toVersion: h.toVersion ?? 0,
        reason: h.reason,
      })),
    })),
    fetchBlob(call: ServerWritableStream<FetchBlobRequest, BlobChunk>) {
      registry.readBlob(call.request.sha256).then(
        async (bytes) => {
          // Chunks below the default 4 MiB message limit; write() back-pressure keeps memory flat.
          for (let o = 0; o < bytes.length && !call.cancelled; o += BLOB_CHUNK_BYTES) {
            if (!call.write({ data: bytes.subarray(o, o + BLOB_CHUNK_BYTES) }))
              await new Promise((r) => call.once('drain', r));
          }
          call.end();
        },
        (e: unknown) => call.emit('error', toStatus(e, log)),
      );
    },
    getProfile: unary(log, (req) => toStoredProfile(registry.getProfile(req.model, req.version))),
    putProfile: unary(log, async (req, call) =>
      toStoredProfile(
        await registry.putProfile(req.model, req.version, parseProfileJson(req.profileJson), callerOf(call)),
      ),
    ),
    syncTokens: unary(log, () => ({
      tokens: tokenDigests().map((t) => ({
        id: t.id,
        name: t.name,
        role: t.role,
        secretSha256: t.secret_hash,
        expiresAt: t.expires_at ?? '',
        revokedAt: t.revoked_at ?? '',
      })),
    })),
    watchModels(call: ServerWritableStream<WatchModelsRequest, ModelEvent>) {
      follow(
        call,
        registry.watch((c) => call.write(toModelEvent(c)), call.request.models),
      );
    },
    watchRollout(call: ServerWritableStream<WatchRolloutRequest, RolloutMessage>) {
      let stop: () => void = () => undefined;
      try {
        stop = registry.watchRollout(call.request.model, Number(call.request.rolloutId), (r) => {
          call.write(toRollout(r));
          if (r.phase !== 'in_progress') call.end();
        });
      } catch (e) {
        call.emit('error', toStatus(e, log));
        return;
      }
      follow(call, () => stop());
    },
    reportReplica(
      call: ServerReadableStream<ReplicaReportMessage, ReportReplicaResponse>,
      cb: sendUnaryData<ReportReplicaResponse>,
    ) {
      // The stream is the replica's presence: when it ends, the replica leaves the fleet view.
      const session = {};
      let done = false;
      const finish = (e?: unknown) => {
        if (done) return;
        done = true;
        reporters.delete(finish);
        registry.fleet.end(session);
        if (e) cb(toStatus(e, log));
        else cb(null, {});
      };
      reporters.add(finish);
      call.on('data', (m: ReplicaReportMessage) => {
        try {
          registry.report(fromReport(m), session);
        } catch (e) {
          finish(e);
        }
      });
      call.on('end', () => finish());
      call.on('error', () => finish());
      call.on('cancelled', () => finish());
    },
  };
  return {
    impl,
    endWatches() {
      for (const w of watches) w.end();
      watches.clear();
      for (const finish of [...reporters]) finish();
    },
  };
}
