/** sightline.v1.Registry handlers: adapters from gRPC calls to the ModelLifecycle. */
import type { Metadata, sendUnaryData, ServerReadableStream, ServerUnaryCall, ServerWritableStream } from '@grpc/grpc-js';
import { principalOf } from './auth.js';
import { splitHeadStream } from './head-stream.js';
import type { AccessControl } from '../../serving/index.js';
import type { FamilyName } from '../../inference/index.js';
import type { ProfileRecord, VersionRecord } from '../../registry/index.js';
import type { ModelChange, ModelLifecycle, ModelStatusView } from '../../serving/index.js';
import {
  ModelEventType,
  VersionState,
  type ModelEvent,
  type ModelStatus,
  type ModelVersion,
  type RegistryServer,
  type UploadChunk,
  type UploadMetadata,
  type WatchModelsRequest,
  type FetchBlobRequest,
  type BlobChunk,
  type StoredProfile,
} from '../../generated/sightline/v1/registry.js';
import { SightlineError } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';
import { toStatus } from './status.js';

const STATE: Record<ModelStatusView['loaded'][number]['state'], VersionState> = {
  loading: VersionState.VERSION_STATE_LOADING,
  warming: VersionState.VERSION_STATE_WARMING,
  ready: VersionState.VERSION_STATE_READY,
  draining: VersionState.VERSION_STATE_DRAINING,
  failed: VersionState.VERSION_STATE_FAILED,
};

const EVENT: Record<ModelChange['type'], ModelEventType> = {
  snapshot: ModelEventType.MODEL_EVENT_TYPE_SNAPSHOT,
  promoted: ModelEventType.MODEL_EVENT_TYPE_PROMOTED,
  rolled_back: ModelEventType.MODEL_EVENT_TYPE_ROLLED_BACK,
  version_added: ModelEventType.MODEL_EVENT_TYPE_VERSION_ADDED,
  version_deleted: ModelEventType.MODEL_EVENT_TYPE_VERSION_DELETED,
  profile_updated: ModelEventType.MODEL_EVENT_TYPE_PROFILE_UPDATED,
};

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

const toModelStatus = (s: ModelStatusView): ModelStatus => ({
  model: s.model,
  activeVersion: s.activeVersion ?? 0,
  rollbackVersion: s.rollbackVersion ?? 0,
  loaded: s.loaded.map((l) => ({ version: l.version, state: STATE[l.state], error: l.error ?? '', inFlight: l.inflight, provider: l.provider })),
});

const toModelEvent = (c: ModelChange): ModelEvent => ({
  type: EVENT[c.type],
  model: c.model,
  activeVersion: c.activeVersion ?? 0,
  rollbackVersion: c.rollbackVersion ?? 0,
  version: c.version ?? 0,
  activeSha256: c.activeSha256 ?? '',
  rollbackSha256: c.rollbackSha256 ?? '',
  actor: c.actor,
  reason: c.reason,
  at: c.at,
});

const BLOB_CHUNK_BYTES = 1024 * 1024;

/** Who made a change, for the history: the authenticated principal, or the peer when auth is off. */
export const actorOf = (call: { getPeer(): string; metadata: Metadata }) => {
  const p = principalOf(call);
  return p === 'anonymous' ? `anonymous@${call.getPeer()}` : p;
};

/** Appends a registry change, or its failure, to the audit log, under the caller's name. */
export function audited<T>(access: AccessControl | undefined, call: { getPeer(): string; metadata: Metadata }, action: string, target: string, p: Promise<T>): Promise<T> {
  return p.then(
    (v) => (access?.record(actorOf(call), call.getPeer(), action, target, 'ok'), v),
    (e: unknown) => {
      access?.record(actorOf(call), call.getPeer(), action, target, 'error', (e as Error).message);
      throw e;
    },
  );
}

/** Turns the upload stream into its metadata and an async iterable of its data chunks. */
async function splitUpload(call: ServerReadableStream<UploadChunk, ModelVersion>): Promise<{ meta: UploadMetadata; chunks: AsyncIterable<Uint8Array> }> {
  const { head, rest } = await splitHeadStream(call as AsyncIterable<UploadChunk>, (m) => m.metadata, (m) => m.data ?? new Uint8Array(0), { message: 'UploadChunk', head: 'metadata (model name)' });
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
  /** Ends every WatchModels stream (they never end on their own): part of shutdown. */
  endWatches(): void;
}

export function registryHandlers(lifecycle: ModelLifecycle, log: Logger, access?: AccessControl): RegistryHandlers {
  const watches = new Set<ServerWritableStream<WatchModelsRequest, ModelEvent>>();
  /** Every registry change, and every failed attempt at one, goes to the audit log. */
  const audit = <T>(call: { getPeer(): string; metadata: Metadata }, action: string, target: string, p: Promise<T>): Promise<T> => audited(access, call, action, target, p);
  const impl: RegistryServer = {
    uploadVersion(call: ServerReadableStream<UploadChunk, ModelVersion>, cb: sendUnaryData<ModelVersion>) {
      splitUpload(call)
        .then(({ meta, chunks }) =>
          audit(call, 'upload', meta.model, lifecycle.upload(
            {
              model: meta.model,
              notes: meta.notes,
              expectedSha256: meta.expectedSha256 || undefined,
              labels: meta.labels,
              family: (meta.family || undefined) as FamilyName | undefined,
              sourceName: meta.sourceName || null,
            },
            chunks,
            actorOf(call),
          )),
        )
        .then(
          ({ version, created }) => cb(null, toModelVersion(version, created)),
          (e: unknown) => cb(toStatus(e, log)),
        );
    },
    listModels: unary(log, () => ({
      models: lifecycle.listModels().map((m) => ({ name: m.name, activeVersion: m.activeVersion ?? 0, rollbackVersion: m.rollbackVersion ?? 0, versionCount: m.versionCount, createdAt: m.createdAt })),
    })),
    listVersions: unary(log, (req) => ({ versions: lifecycle.listVersions(req.model).map((v) => toModelVersion(v)) })),
    getVersion: unary(log, (req) => toModelVersion(lifecycle.getVersion(req.model, req.version))),
    getModelStatus: unary(log, (req) => toModelStatus(lifecycle.status(req.model))),
    promote: unary(log, async (req, call) => toModelStatus(await audit(call, 'promote', `${req.model}@${req.version}`, lifecycle.promote(req.model, req.version, actorOf(call), req.reason)))),
    rollback: unary(log, async (req, call) => toModelStatus(await audit(call, 'rollback', req.model, lifecycle.rollback(req.model, actorOf(call), req.reason)))),
    deleteVersion: unary(log, async (req, call) => audit(call, 'delete', `${req.model}@${req.version}`, lifecycle.deleteVersion(req.model, req.version, actorOf(call), req.reason))),
    getHistory: unary(log, (req) => ({
      entries: lifecycle.history(req.model, req.limit || undefined).map((h) => ({
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
      lifecycle.readBlob(call.request.sha256).then(
        async (bytes) => {
          // Chunks below the default 4 MiB message limit; write() back-pressure keeps memory flat.
          for (let o = 0; o < bytes.length && !call.cancelled; o += BLOB_CHUNK_BYTES) {
            if (!call.write({ data: bytes.subarray(o, o + BLOB_CHUNK_BYTES) })) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        },
        (e: unknown) => call.emit('error', toStatus(e, log)),
      );
    },
    getProfile: unary(log, (req) => toStoredProfile(lifecycle.getProfile(req.model, req.version))),
    putProfile: unary(log, async (req, call) =>
      toStoredProfile(
        await audit(call, 'profile', `${req.model}@${req.version}`, Promise.resolve().then(() => lifecycle.putProfile(req.model, req.version, parseProfileJson(req.profileJson), actorOf(call)))),
      ),
    ),
    syncTokens: unary(log, () => ({
      tokens: (access?.tokenDigests() ?? []).map((t) => ({ id: t.id, name: t.name, role: t.role, secretSha256: t.secret_hash, expiresAt: t.expires_at ?? '', revokedAt: t.revoked_at ?? '' })),
    })),
    watchModels(call: ServerWritableStream<WatchModelsRequest, ModelEvent>) {
      const stop = lifecycle.watch((c) => call.write(toModelEvent(c)), call.request.models);
      watches.add(call);
      const end = () => {
        stop();
        watches.delete(call);
      };
      call.on('cancelled', end);
      call.on('close', end);
      call.on('finish', end);
    },
  };
  return {
    impl,
    endWatches() {
      for (const w of watches) w.end();
      watches.clear();
    },
  };
}
