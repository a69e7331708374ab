/**
 * The registry as an inference replica sees it, over gRPC: WatchModels, GetVersion and FetchBlob
 * (into a local content-addressed cache, so each file crosses the network once per replica),
 * ReportReplica on a stream kept open, SyncTokens, and the drift profiles. Every call has the same
 * deadline and every failure the same mapping to this server's errors.
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
  callTimeoutMs?: number;
  /** Downloaded model files, by sha256 (verified on the way in and on every read). */
  cache: BlobStore;
  /** The largest model file this replica downloads (registry.maxUploadBytes). */
  maxModelBytes: number;
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
  const deadline = () => Date.now() + (o.callTimeoutMs ?? 10_000);
  /** One unary call with this peer's deadline and error mapping. */
  const unary = <Req, Res>(method: Unary<Req, Res>, req: Req, what: string, meta: Metadata = md()): Promise<Res> =>
    new Promise((resolve, reject) =>
      method.call(client, req, meta, { deadline: deadline() }, (err, res) =>
        err ? reject(fromStatus(err, what)) : resolve(res!),
      ),
    );

  async function* blobChunks(sha256: string): AsyncIterable<Uint8Array> {
    const call = client.fetchBlob({ sha256 }, md());
    try {
      for await (const chunk of call as AsyncIterable<BlobChunk>) yield chunk.data;
    } catch (e) {
      throw fromStatus(e as ServiceError, `fetching ${sha256.slice(0, 12)}`);
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
      call.on('error', (e: ServiceError) => end(e.code === status.CANCELLED ? null : e));
      call.on('end', () => end(new Error('the registry ended the watch')));
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
        o.cache.putStream(blobChunks(v.sha256), { expectedSha256: v.sha256, maxBytes: o.maxModelBytes });
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
        const call = client.reportReplica(md(), () => {
          // The stream ended (registry restart, network): the next report opens a new one.
          if (reports === call) reports = null;
        });
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
