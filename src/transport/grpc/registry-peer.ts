/** The registry as seen by an inference replica: WatchModels, GetVersion and FetchBlob over gRPC. */
import { credentials, Metadata, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { SightlineError } from '../../errors.js';
import { ModelEventType, RegistryClient, type BlobChunk, type ModelEvent } from '../../generated/sightline/v1/registry.js';
import type { ModelChange, ModelChangeType, RegistryPeer, TokenDigest } from '../../serving/index.js';

const TYPE: Partial<Record<ModelEventType, ModelChangeType>> = {
  [ModelEventType.MODEL_EVENT_TYPE_SNAPSHOT]: 'snapshot',
  [ModelEventType.MODEL_EVENT_TYPE_PROMOTED]: 'promoted',
  [ModelEventType.MODEL_EVENT_TYPE_ROLLED_BACK]: 'rolled_back',
  [ModelEventType.MODEL_EVENT_TYPE_VERSION_ADDED]: 'version_added',
  [ModelEventType.MODEL_EVENT_TYPE_VERSION_DELETED]: 'version_deleted',
  [ModelEventType.MODEL_EVENT_TYPE_PROFILE_UPDATED]: 'profile_updated',
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
function fromStatus(err: ServiceError, what: string): SightlineError {
  return new SightlineError(PASSED_ON[err.code] ?? 'NOT_READY', `registry: ${what}: ${err.details}`);
}

export interface PeerOptions {
  address: string;
  credentials?: ChannelCredentials;
  /** Added to every call (the replica's token when auth is on). */
  metadata?: () => Metadata;
  callTimeoutMs?: number;
}

export function grpcRegistryPeer(o: PeerOptions): RegistryPeer & { close(): void } {
  const client = new RegistryClient(o.address, o.credentials ?? credentials.createInsecure(), {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
    // Reconnect quickly when the registry restarts.
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 5_000,
  });
  const md = () => o.metadata?.() ?? new Metadata();
  const deadline = () => Date.now() + (o.callTimeoutMs ?? 10_000);
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
        const c: ModelChange = {
          type,
          model: e.model,
          activeVersion: orNull(e.activeVersion),
          rollbackVersion: orNull(e.rollbackVersion),
          version: orNull(e.version),
          activeSha256: e.activeSha256 || null,
          rollbackSha256: e.rollbackSha256 || null,
          actor: e.actor,
          reason: e.reason,
          at: e.at,
        };
        onChange(c);
      });
      call.on('error', (e: ServiceError) => end(e.code === status.CANCELLED ? null : e));
      call.on('end', () => end(new Error('the registry ended the watch')));
      return () => {
        ended = true;
        call.cancel();
      };
    },
    getVersion(model, version) {
      return new Promise((resolve, reject) =>
        client.getVersion({ model, version }, md(), { deadline: Date.now() + (o.callTimeoutMs ?? 10_000) }, (err, v) =>
          err ? reject(new SightlineError(err.code === status.NOT_FOUND ? 'NOT_FOUND' : 'NOT_READY', `registry: ${err.details}`)) : resolve({ sha256: v!.sha256, family: v!.family, classNames: v!.classNames, sizeBytes: Number(v!.sizeBytes) }),
        ),
      );
    },
    async *fetchBlob(sha256) {
      const call = client.fetchBlob({ sha256 }, md());
      try {
        for await (const chunk of call as AsyncIterable<BlobChunk>) yield chunk.data;
      } catch (e) {
        const err = e as ServiceError;
        throw new SightlineError('NOT_READY', `registry: fetching ${sha256.slice(0, 12)} failed: ${err.details ?? err.message}`);
      }
    },
    syncTokens() {
      return new Promise((resolve, reject) =>
        client.syncTokens({}, md(), { deadline: Date.now() + (o.callTimeoutMs ?? 10_000) }, (err, r) =>
          err
            ? reject(new SightlineError('NOT_READY', `registry: token sync failed: ${err.details}`))
            : resolve(r!.tokens.map((t) => ({ id: t.id, name: t.name, role: t.role as TokenDigest['role'], secret_hash: t.secretSha256, expires_at: t.expiresAt || null, revoked_at: t.revokedAt || null }))),
        ),
      );
    },
    getProfile(model, version) {
      return new Promise((resolve, reject) =>
        client.getProfile({ model, version }, md(), { deadline: deadline() }, (err, p) => {
          // No profile, or no such version any more: either way nothing to monitor against.
          if (err?.code === status.NOT_FOUND) resolve(null);
          else if (err) reject(fromStatus(err, `reading the profile of ${model} version ${version}`));
          else resolve(JSON.parse(p!.profileJson) as unknown);
        }),
      );
    },
    putProfile(model, version, profile, authorization) {
      // The caller's own token when there is one: the registry checks and audits them, not the replica.
      const meta = authorization ? Metadata.fromHttp2Headers({ authorization }) : md();
      return new Promise((resolve, reject) =>
        client.putProfile({ model, version, profileJson: JSON.stringify(profile) }, meta, { deadline: deadline() }, (err) =>
          err ? reject(fromStatus(err, `storing the profile of ${model} version ${version}`)) : resolve(),
        ),
      );
    },
    close: () => client.close(),
  };
}
