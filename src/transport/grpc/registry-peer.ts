/**
 * The registry as an inference replica sees it, over gRPC: WatchModels, GetVersion and FetchBlob
 * (into a local content-addressed cache, so each file crosses the network once per replica),
 * ReportReplica on a stream kept open, SyncTokens, and the drift profiles. Every unary call has the
 * same deadline (callTimeoutMs); a download has one sized to its file (callTimeoutMs + size /
 * fetchMinBytesPerSecond) and fails sooner when no bytes arrive for fetchIdleTimeoutMs, so a stalled
 * registry ends a load as failed instead of leaving it loading. The two streams kept open (the watch
 * and the reports) have no deadline: they break when the registry goes away. Every failure goes
 * through one mapping to this server's errors (fromStatus).
 */
import {
  credentials,
  Metadata,
  status,
  type ChannelCredentials,
  type ClientWritableStream,
  type ServiceError,
} from '@grpc/grpc-js';
import { SightlineError } from '../../errors.js';
import {
  ModelEventType,
  RegistryClient,
  VersionState,
  type BlobChunk,
  type ModelEvent,
  type ReplicaReport as ReplicaReportMessage,
} from '../../generated/sightline/v1/registry.js';
import type { BlobStore } from '../../registry/index.js';
import type { Logger } from '../../telemetry/logger.js';
import type {
  ModelChangeType,
  ModelFile,
  RegistryPeer,
  RemoteProfiles,
  ReplicaReport,
  TokenDigest,
  VersionState as ServingVersionState,
} from '../../serving/index.js';

const TYPE: Partial<Record<ModelEventType, ModelChangeType>> = {
  [ModelEventType.MODEL_EVENT_TYPE_SNAPSHOT]: 'snapshot',
  [ModelEventType.MODEL_EVENT_TYPE_SYNCED]: 'synced',
  [ModelEventType.MODEL_EVENT_TYPE_PROMOTED]: 'promoted',
  [ModelEventType.MODEL_EVENT_TYPE_ROLLED_BACK]: 'rolled_back',
  [ModelEventType.MODEL_EVENT_TYPE_VERSION_ADDED]: 'version_added',
  [ModelEventType.MODEL_EVENT_TYPE_VERSION_DELETED]: 'version_deleted',
  [ModelEventType.MODEL_EVENT_TYPE_PROFILE_UPDATED]: 'profile_updated',
  [ModelEventType.MODEL_EVENT_TYPE_TRIAL_CHANGED]: 'trial_changed',
};

const trialRef = (t: ModelEvent['shadow']) => (t ? { id: Number(t.id), version: t.version, share: t.share } : null);

export const VERSION_STATE: Record<ServingVersionState, VersionState> = {
  loading: VersionState.VERSION_STATE_LOADING,
  warming: VersionState.VERSION_STATE_WARMING,
  ready: VersionState.VERSION_STATE_READY,
  serving: VersionState.VERSION_STATE_SERVING,
  draining: VersionState.VERSION_STATE_DRAINING,
  failed: VersionState.VERSION_STATE_FAILED,
};

const orNull = (n: number) => (n === 0 ? null : n);

/** The registry's answer as this server's own error: the caller's mistakes keep their code; the rest is the registry being unavailable. */
const PASSED_ON: Partial<Record<status, SightlineError['code']>> = {
  [status.NOT_FOUND]: 'NOT_FOUND',
  [status.INVALID_ARGUMENT]: 'INVALID_INPUT',
  [status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [status.FAILED_PRECONDITION]: 'PRECONDITION',
};

function fromStatus(err: Partial<ServiceError>, what: string): SightlineError {
  const code = err.code !== undefined ? PASSED_ON[err.code] : undefined;
  return new SightlineError(code ?? 'NOT_READY', `registry: ${what}: ${err.details ?? err.message ?? 'unknown error'}`);
}

export interface PeerOptions {
  address: string;
  credentials?: ChannelCredentials;
  /** Added to every call (the replica's token when auth is on). */
  metadata?: () => Metadata;
  /** Deadline of every unary call (registry.callTimeoutMs). */
  callTimeoutMs: number;
  /** A download that receives no bytes this long fails (registry.fetchIdleTimeoutMs). */
  fetchIdleTimeoutMs: number;
  /** A download's deadline is callTimeoutMs plus its size at this rate (registry.fetchMinBytesPerSecond). */
  fetchMinBytesPerSecond: number;
  /** Downloaded model files, by sha256 (verified on the way in and on every read). */
  cache: BlobStore;
  /** The largest model file this replica downloads (registry.maxUploadBytes). */
  maxModelBytes: number;
  /** Where a broken report stream is noted (the watch's breaks reach the follower, which logs them). */
  log?: Logger;
}

type Unary<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res?: Res) => void,
) => unknown;

export function grpcRegistryPeer(
  o: PeerOptions,
): RegistryPeer & RemoteProfiles & { syncTokens(): Promise<TokenDigest[]>; close(): void } {
  const client = new RegistryClient(o.address, o.credentials ?? credentials.createInsecure(), {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    // Reconnect quickly when the registry restarts.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 5_000,
  });
  const md = () => o.metadata?.() ?? new Metadata();
  const deadline = () => Date.now() + o.callTimeoutMs;
  /** One unary call with this peer's deadline and error mapping. */
  const unary = <Req, Res>(method: Unary<Req, Res>, req: Req, what: string, meta: Metadata = md()): Promise<Res> =>
    new Promise((resolve, reject) =>
      method.call(client, req, meta, { deadline: deadline() }, (err, res) =>
        err ? reject(fromStatus(err, what)) : resolve(res!),
      ),
    );

  /** Downloads in progress, cancelled by close() so none outlives the peer. */
  const downloads = new Set<{ cancel(): void }>();

  /**
   * A blob's chunks as they arrive, under a deadline sized to the file and an idle timeout; every way
   * it can end early is thrown as this server's error, naming the limit that ended it.
   */
  async function* blobChunks(sha256: string, size: number): AsyncIterable<Uint8Array> {
    const what = `fetching ${sha256.slice(0, 12)}`;
    const limitMs = o.callTimeoutMs + Math.ceil((size / o.fetchMinBytesPerSecond) * 1000);
    const call = client.fetchBlob({ sha256 }, md(), { deadline: Date.now() + limitMs });
    downloads.add(call);
    let stalled = false;
    const idle = () => {
      stalled = true;
      call.cancel();
    };
    const timer = setTimeout(idle, o.fetchIdleTimeoutMs);
    try {
      for await (const chunk of call as AsyncIterable<BlobChunk>) {
        timer.refresh();
        yield chunk.data;
      }
    } catch (e) {
      const err = e as ServiceError;
      if (stalled)
        throw new SightlineError(
          'NOT_READY',
          `registry: ${what}: no data for ${o.fetchIdleTimeoutMs} ms (registry.fetchIdleTimeoutMs)`,
        );
      if (err.code === status.DEADLINE_EXCEEDED)
        throw new SightlineError(
          'NOT_READY',
          `registry: ${what}: ${size} bytes not received within ${limitMs} ms (registry.callTimeoutMs + size / registry.fetchMinBytesPerSecond)`,
        );
      throw fromStatus(err, what);
    } finally {
      clearTimeout(timer);
      downloads.delete(call);
      // Ended early by the reader (size limit, hash): stop the transfer too.
      call.cancel();
    }
  }

  /** The report stream, opened on the first report and again after it breaks; ending it leaves the fleet view. */
  let reports: ClientWritableStream<ReplicaReportMessage> | null = null;
  const leave = () => {
    reports?.end();
    reports = null;
  };

  return {
    watch(onChange, onEnd) {
      const call = client.watchModels({ models: [] }, md());
      let ended = false;
      const end = (e: Error | null) => {
        if (!ended) {
          ended = true;
          onEnd(e);
        }
      };
      call.on('data', (e: ModelEvent) => {
        const type = TYPE[e.type];
        if (!type) return;
        onChange({
          type,
          model: e.model,
          activeVersion: orNull(e.activeVersion),
          rollbackVersion: orNull(e.rollbackVersion),
          version: orNull(e.version),
          versions: e.versions,
          activeSha256: e.activeSha256 || null,
          rollbackSha256: e.rollbackSha256 || null,
          shadow: trialRef(e.shadow),
          canary: trialRef(e.canary),
          actor: e.actor,
          reason: e.reason,
          at: e.at,
        });
      });
      // Our own cancel (the function returned below) sets `ended` first, so any error here is the registry's or the network's.
      call.on('error', (e: ServiceError) => end(fromStatus(e, 'watching models')));
      call.on('end', () => end(fromStatus({ details: 'the registry ended the watch' }, 'watching models')));
      return () => {
        ended = true;
        call.cancel();
      };
    },

    async fetchModel(model, version) {
      const v = await unary(client.getVersion, { model, version }, `model ${model} version ${version}`);
      const size = Number(v.sizeBytes);
      if (size > o.maxModelBytes) {
        throw new SightlineError(
          'PRECONDITION',
          `its file is ${size} bytes, over this replica's limit of ${o.maxModelBytes} (registry.maxUploadBytes)`,
          { model, version },
        );
      }
      const bytes = async () => new Uint8Array(await o.cache.read(v.sha256));
      const download = () =>
        o.cache.putStream(blobChunks(v.sha256, size), { expectedSha256: v.sha256, maxBytes: o.maxModelBytes });
      if (!(await o.cache.exists(v.sha256))) await download();
      let file: Uint8Array;
      try {
        file = await bytes();
      } catch (e) {
        // A cached file damaged since it was stored: fetch it again, once.
        if (!(e instanceof SightlineError && e.fields.corrupt === true)) throw e;
        await download();
        file = await bytes();
      }
      return { sha256: v.sha256, bytes: file, family: v.family as ModelFile['family'], classNames: v.classNames };
    },

    report(r) {
      if (!reports) {
        const call = client.reportReplica(md(), (e) => {
          // The stream ended (registry restart, network): the next report opens a new one.
          if (reports === call) reports = null;
          if (e) {
            const err = fromStatus(e, 'the report stream');
            // Unavailable: the registry went away, which the watch reports too; anything else is news.
            o.log?.[err.code === 'NOT_READY' ? 'debug' : 'warn'](
              { event: 'registry_report_stream_ended', code: err.code, grpcCode: status[e.code], err: err.message },
              'the report stream to the registry ended; the next report opens a new one',
            );
          }
        });
        // The callback above has the call's status; this keeps a stray stream error (a write racing the end) from crashing.
        call.on('error', () => undefined);
        reports = call;
      }
      try {
        reports.write(toReportMessage(r));
      } catch {
        reports = null; // the call ended under it; the next report opens a new one
      }
    },

    leave,

    syncTokens: () =>
      unary(client.syncTokens, {}, 'token sync').then((r) =>
        r.tokens.map((t) => ({
          id: t.id,
          name: t.name,
          role: t.role as TokenDigest['role'],
          secret_hash: t.secretSha256,
          expires_at: t.expiresAt || null,
          revoked_at: t.revokedAt || null,
        })),
      ),

    getProfile: (model, version) =>
      unary(client.getProfile, { model, version }, `reading the profile of ${model} version ${version}`).then(
        (p) => JSON.parse(p.profileJson) as unknown,
        // No profile, or no such version any more: either way nothing to monitor against.
        (e: SightlineError) => (e.code === 'NOT_FOUND' ? null : Promise.reject(e)),
      ),

    putProfile: (model, version, profile, authorization) =>
      // The caller's own token when there is one: the registry checks and audits them, not the replica.
      unary(
        client.putProfile,
        { model, version, profileJson: JSON.stringify(profile) },
        `storing the profile of ${model} version ${version}`,
        authorization ? Metadata.fromHttp2Headers({ authorization }) : md(),
      ).then(() => undefined),

    close() {
      leave();
      for (const d of downloads) d.cancel();
      client.close();
    },
  };
}

export function toReportMessage(r: ReplicaReport): ReplicaReportMessage {
  return {
    replica: r.replica,
    trials: (r.trials ?? []).map((t) => ({
      trialId: BigInt(t.trialId),
      model: t.model,
      kind: t.kind,
      tallyJson: JSON.stringify(t.kind === 'shadow' ? t.shadow : t.canary),
      incarnation: t.incarnation,
    })),
    models: r.models.map((m) => ({
      model: m.model,
      servingVersion: m.servingVersion ?? 0,
      activeVersion: m.activeVersion ?? 0,
      versions: m.versions.map((v) => ({
        version: v.version,
        state: VERSION_STATE[v.state],
        error: v.error ?? '',
        inFlight: v.inflight,
        provider: v.provider,
      })),
    })),
  };
}
