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
  ModelChange,
  ModelRegistry,
  ModelStatusView,
  ReplicaModelReport,
  ReplicaReport,
  Rollout,
  RolloutOptions,
  RolloutPhase,
  TokenDigest,
  VersionState,
} from '../../serving/index.js';
import {
  ModelEventType,
  RolloutPhase as ProtoRolloutPhase,
  VersionState as ProtoVersionState,
  type BlobChunk,
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
import { toStatus } from './status.js';

const EVENT: Record<ModelChange['type'], ModelEventType> = {
  snapshot: ModelEventType.MODEL_EVENT_TYPE_SNAPSHOT,
  synced: ModelEventType.MODEL_EVENT_TYPE_SYNCED,
  promoted: ModelEventType.MODEL_EVENT_TYPE_PROMOTED,
  rolled_back: ModelEventType.MODEL_EVENT_TYPE_ROLLED_BACK,
  version_added: ModelEventType.MODEL_EVENT_TYPE_VERSION_ADDED,
  version_deleted: ModelEventType.MODEL_EVENT_TYPE_VERSION_DELETED,
  profile_updated: ModelEventType.MODEL_EVENT_TYPE_PROFILE_UPDATED,
};

const PHASE: Record<RolloutPhase, ProtoRolloutPhase> = {
  in_progress: ProtoRolloutPhase.ROLLOUT_PHASE_IN_PROGRESS,
  succeeded: ProtoRolloutPhase.ROLLOUT_PHASE_SUCCEEDED,
  failed: ProtoRolloutPhase.ROLLOUT_PHASE_FAILED,
  superseded: ProtoRolloutPhase.ROLLOUT_PHASE_SUPERSEDED,
};

const FROM_VERSION_STATE = new Map(Object.entries(VERSION_STATE).map(([k, v]) => [v, k as VersionState]));

export const toModelVersion = (v: VersionRecord, created = false): ModelVersion => ({
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
  actor: c.actor,
  reason: c.reason,
  at: c.at,
});

const fromRolloutOptions = (o: RolloutOptionsMessage | undefined): RolloutOptions => ({
  timeoutMs: o?.timeoutMs ?? 0,
  autoRollback: o?.autoRollback ?? false,
});

function fromReport(m: ReplicaReportMessage): ReplicaReport {
  if (!m.replica) throw new SightlineError('INVALID_INPUT', 'a replica report names its replica');
  return {
    replica: m.replica,
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
      models: registry
        .listModels()
        .map((m) => ({
          name: m.name,
          activeVersion: m.activeVersion ?? 0,
          rollbackVersion: m.rollbackVersion ?? 0,
          versionCount: m.versionCount,
          createdAt: m.createdAt,
        })),
    })),
    listVersions: unary(log, (req) => ({ versions: registry.listVersions(req.model).map((v) => toModelVersion(v)) })),
    getVersion: unary(log, (req) => toModelVersion(registry.getVersion(req.model, req.version))),
    getModelStatus: unary(log, (req) => toModelStatus(registry.status(req.model))),
    promote: unary(log, async (req, call) =>
      toModelStatus(
        await registry.promote(req.model, req.version, callerOf(call), req.reason, fromRolloutOptions(req.rollout)),
      ),
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
          registry.fleet.report(fromReport(m), session);
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
