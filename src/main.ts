/**
 * Composition root: the only module that wires layers together; the CLI starts a server through
 * startSightline(). One assembly per role, built from the same parts:
 *   all        registry + follower (in-process peer) + detection: a fleet of one
 *   registry   registry (database, blobs, Registry service, fleet view and rollouts)
 *   inference  follower (gRPC peer to registry.address) + detection
 * Then, for every role alike: gRPC, the admin port, health from readiness, and one ordered shutdown.
 */
import { credentials, Metadata } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { describeSizing, type Config, type ServerRole } from './config/index.js';
import { SightlineError } from './errors.js';
import { DCT_SCALING_AVAILABLE, InferencePool, JPEG_DECODER, type ImagePrep } from './inference/index.js';
import {
  AuditLog,
  BlobStore,
  defaultMigrationsDir,
  loadKey,
  RegistryStore,
  TokenMirror,
  TokenStore,
} from './registry/index.js';
import {
  AccessControl,
  DetectService,
  DriftMonitor,
  localRegistryPeer,
  ModelFollower,
  ModelManager,
  ModelRegistry,
  promotionGates,
  ShadowRunner,
  TensorService,
  TokenSync,
  TrialTallies,
  type DriftMonitorDeps,
  type RegistryPeer,
  type TokenSource,
} from './serving/index.js';
import { startAdminServer, type AdminServer } from './telemetry/admin-http.js';
import type { Logger } from './telemetry/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { initTracing, type SpanExporter, type Tracing } from './telemetry/tracing.js';
import { grpcRegistryPeer } from './transport/grpc/registry-peer.js';
import { startGrpcServer, type GrpcServer, type GrpcServices } from './transport/grpc/server.js';
import { startHttpServer, type HttpServer } from './transport/http/server.js';
import { ModelRepository, OpenInference } from './transport/oip/index.js';

export interface Sightline {
  readonly port: number;
  readonly config: Config;
  /** The loaded versions (roles all and inference); null in role registry, which serves none. */
  readonly models: ModelManager | null;
  /** The registry (roles all and registry); null on inference replicas. */
  readonly registry: ModelRegistry | null;
  /** Follows the registry's pointers (roles all and inference); null in role registry. */
  readonly follower: ModelFollower | null;
  readonly pool: InferencePool;
  readonly grpc: GrpcServer;
  readonly metrics: Metrics;
  /** Drift and anomaly monitoring of the versions this process serves; null in role registry. */
  readonly drift: DriftMonitor | null;
  readonly tracing: Tracing;
  /** The admin HTTP server (/metrics, /healthz, /readyz); null when admin.enabled is false. */
  readonly admin: AdminServer | null;
  /** The HTTP port (Open Inference Protocol REST, /v1/detect); null unless http.enabled and this role serves Detect. */
  readonly http: HttpServer | null;
  /** Resolves once the start-up work of the role is done (models registered, loaded) and health is set. */
  readonly ready: Promise<void>;
  /** Graceful stop: NOT_SERVING, drain calls within graceMs, release everything. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Replaces the configured trace exporter (tests: an in-memory exporter). */
  spanExporter?: SpanExporter;
}

/** package.json's version: service.version in metrics and traces. */
const SERVICE_VERSION = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

/** What every assembly gets. */
interface Context {
  config: Config;
  log: Logger;
  metrics: Metrics;
  keys: { key: Buffer | null; previousKeys: Buffer[] };
  resources: Resources;
}

/** One role's parts, as the common start-up and shutdown use them. */
interface Assembly {
  services: GrpcServices;
  pool: InferencePool;
  models: ModelManager | null;
  registry: ModelRegistry | null;
  follower: ModelFollower | null;
  drift: DriftMonitor | null;
  /** Why the server should not take traffic yet; null when it should. */
  notReady(): string | null;
  /** Start-up work once gRPC listens; `changed` re-reads readiness. */
  start(changed: () => void): Promise<void>;
  /** Stops background work (following the registry, token syncs) before the calls drain. */
  stop(): void;
}

/** What an assembly opened, released newest first, once, also after a failed start. */
class Resources {
  private readonly steps: (() => unknown)[] = [];
  add<T>(thing: T, release: (t: T) => unknown): T {
    this.steps.push(() => release(thing));
    return thing;
  }
  async release(): Promise<void> {
    for (let step = this.steps.pop(); step; step = this.steps.pop()) await step();
  }
}

const ASSEMBLIES: Record<ServerRole, (ctx: Context) => Promise<Assembly>> = {
  all: assembleAll,
  registry: assembleRegistry,
  inference: assembleInference,
};

export async function startSightline(config: Config, log: Logger, opts: StartOptions = {}): Promise<Sightline> {
  const { telemetry } = config;
  const metrics = Metrics.create({
    serviceVersion: SERVICE_VERSION,
    serviceName: telemetry.tracing.serviceName,
    enabled: telemetry.metrics,
  });
  const tracing = initTracing(telemetry.tracing, { serviceVersion: SERVICE_VERSION, exporter: opts.spanExporter });
  const resources = new Resources();
  resources.add(null, () => Promise.all([tracing.shutdown(), metrics.shutdown()]));
  let grpc: GrpcServer | null = null;
  let admin: AdminServer | null = null;
  let http: HttpServer | null = null;
  let assembly: Assembly;
  let closing: Promise<void> | null = null;
  const notReady = () => (closing ? 'shutting down' : assembly.notReady());
  try {
    // A missing or malformed key stops the start: serving nothing beats serving garbage.
    const keys = {
      key: loadKey(config.encryption),
      previousKeys: (config.encryption.previousKeyFiles ?? []).map((keyFile) => loadKey({ keyFile })!),
    };
    assembly = await ASSEMBLIES[config.role]({ config, log, metrics, keys, resources });
    grpc = await startGrpcServer(
      { ...config.grpc, tls: config.tls },
      config.stream,
      { ...assembly.services, telemetry: { metrics, tracing } },
      log,
    );
    if (config.admin.enabled) {
      admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        metrics,
        isReady: () => notReady() === null,
        notReadyReason: () => notReady() ?? 'ready',
        log,
      });
    }
    // HTTP port: Open Inference Protocol REST and /v1/detect, where Detect is served and http.enabled.
    const { detect, oip, access } = assembly.services;
    if (config.http.enabled && detect && oip) {
      const ready = () => notReady() === null;
      http = await startHttpServer(
        { ...config.http, tls: config.tls },
        { detect, oip: oip.service, isReady: ready, serverVersion: SERVICE_VERSION, metrics, access },
        log,
      );
    }
  } catch (e) {
    grpc?.forceShutdown();
    await http?.close(0);
    await admin?.close();
    await resources.release();
    throw e;
  }
  const server = grpc;
  // Health follows readiness: SERVING once this process serves what it should, NOT_SERVING otherwise.
  const updateHealth = () => {
    if (!closing) server.setServing(notReady() === null ? 'SERVING' : 'NOT_SERVING');
  };
  const close = (graceMs = config.shutdownGraceMs) =>
    (closing ??= (async () => {
      log.info({ event: 'shutdown_started', graceMs }, 'shutting down');
      // /readyz answers 503 from here on.
      assembly.stop();
      await Promise.all([server.shutdown(graceMs), http?.close(graceMs)]);
      await admin?.close();
      await resources.release();
      log.info({ event: 'shutdown_complete' }, 'shutdown complete');
    })());
  const ready = (async () => {
    await assembly.start(updateHealth);
    updateHealth();
    const why = notReady();
    if (why && config.role !== 'inference')
      log.warn(
        { event: 'not_ready', reason: why },
        `not ready: ${why}; health stays NOT_SERVING until a version is promoted`,
      );
  })();
  ready.catch(() => undefined); // the caller decides what a failed start means
  const { pool, models, registry, follower, drift } = assembly;
  return {
    port: server.port,
    config,
    models,
    registry,
    follower,
    pool,
    grpc: server,
    metrics,
    drift,
    tracing,
    admin,
    http,
    ready,
    close,
  };
}

/** Role all: the registry and its one replica in one process. Promote loads the version here first, so one that cannot be served is refused. */
async function assembleAll(ctx: Context): Promise<Assembly> {
  const store = openStore(ctx);
  const pool = await createPool(ctx, ctx.config.pool.workers);
  const { registry, access } = openRegistry(ctx, store, pool);
  const serving = createServing(ctx, pool, localRegistryPeer(registry), { store: registry.profileStore() });
  registry.addPromoteCheck((model, version) => serving.follower.prepare(model, version));
  return {
    ...serving,
    pool,
    registry,
    services: { detect: serving.detect, drift: serving.drift, registry, access, oip: serving.oip(registry) },
    notReady: () => serving.notReady(),
    async start(changed) {
      await registry.start();
      serving.watch(changed);
      await registerConfiguredModels(ctx.config, registry);
      await serving.follower.idle();
    },
    stop: () => serving.follower.stop(),
  };
}

/** Role registry: database, blobs, the Registry service, the fleet view and rollouts; loads models only to validate uploads. */
async function assembleRegistry(ctx: Context): Promise<Assembly> {
  const store = openStore(ctx);
  const pool = await createPool(ctx, 1);
  const { registry, access } = openRegistry(ctx, store, pool);
  let started = false;
  return {
    pool,
    registry,
    models: null,
    follower: null,
    drift: null,
    services: { registry, access },
    notReady: () => (started ? null : 'registry not verified yet'),
    async start(changed) {
      await registry.start();
      await registerConfiguredModels(ctx.config, registry);
      started = true;
      changed();
    },
    stop: () => undefined,
  };
}

/** Role inference: follows the registry at registry.address over gRPC and serves Detector; no database. */
async function assembleInference(ctx: Context): Promise<Assembly> {
  const { config, log, resources } = ctx;
  if (!config.registry.address)
    throw new SightlineError('INVALID_INPUT', 'role inference needs registry.address (--registry HOST:PORT)');
  const pool = await createPool(ctx, config.pool.workers);
  const token = config.registry.tokenFile ? readSecret(config.registry.tokenFile, 'registry.tokenFile') : null;
  const peer = resources.add(
    grpcRegistryPeer({
      address: config.registry.address,
      credentials: config.registry.caFile ? credentials.createSsl(readFileSync(config.registry.caFile)) : undefined,
      metadata: token ? () => Metadata.fromHttp2Headers({ authorization: `Bearer ${token}` }) : undefined,
      callTimeoutMs: config.registry.callTimeoutMs,
      fetchIdleTimeoutMs: config.registry.fetchIdleTimeoutMs,
      fetchMinBytesPerSecond: config.registry.fetchMinBytesPerSecond,
      cache: new BlobStore(resolve(config.registry.cacheDir), ctx.keys),
      maxModelBytes: config.registry.maxUploadBytes,
      log,
    }),
    (p) => p.close(),
  );
  // Replicas have no database: they check tokens against a mirror of the registry's, synced
  // periodically and at once when a caller presents a token the mirror does not know yet.
  let tokenSync: TokenSync | null = null;
  const mirror = new TokenMirror({ onUnknownId: () => tokenSync?.request() });
  const access = createAccess(ctx, mirror, null);
  // Until the registry has a reference profile for a version, a replica keeps a traffic profile in memory.
  const serving = createServing(ctx, pool, peer, { remote: peer });
  return {
    ...serving,
    pool,
    registry: null,
    services: { detect: serving.detect, drift: serving.drift, access, oip: serving.oip(null) },
    notReady: () => serving.notReady(),
    async start(changed) {
      serving.watch(changed);
      if (config.auth.enabled && !tokenSync) {
        tokenSync = new TokenSync({
          fetch: () => peer.syncTokens(),
          apply: (d) => mirror.replace(d),
          intervalMs: config.auth.tokenSyncIntervalMs,
          log,
        });
        await tokenSync.start();
      }
    },
    stop() {
      serving.follower.stop();
      tokenSync?.stop();
    },
  };
}

/** Worker threads running ONNX Runtime; the registry role needs one, to validate uploads. */
async function createPool({ config, log, metrics, resources }: Context, workers: number): Promise<InferencePool> {
  if (workers === config.pool.workers) {
    log.info({ event: 'pool_sized', ...config.sizing, pool: config.pool }, describeSizing(config.pool, config.sizing));
    const dctScaling = config.preprocess.jpegDctScaling && DCT_SCALING_AVAILABLE;
    log.info(
      { event: 'jpeg_decoder', decoder: JPEG_DECODER, dctScaling },
      `JPEGs decoded by ${JPEG_DECODER}, DCT scaling ${dctScaling ? 'on' : 'off'}`,
    );
  }
  const pool = resources.add(
    await InferencePool.create({
      workers,
      maxQueue: config.pool.maxQueue,
      maxBackground: config.shadow.maxQueue,
      workerNice: config.pool.workerNice,
      onEvent: (e) =>
        log.warn({ event: e.type, worker: e.worker, ...('code' in e ? { code: e.code } : {}) }, `inference ${e.type}`),
    }),
    (p) => p.close(),
  );
  const priorities = pool.threadPriorities();
  const skipped = priorities.find((p) => p?.skipped)?.skipped;
  if (config.pool.workerNice > 0 && skipped)
    log.warn(
      { event: 'worker_priority_not_set', nice: config.pool.workerNice, reason: skipped },
      `inference threads keep the process priority: ${skipped}`,
    );
  else
    log.info({ event: 'worker_priority', nice: priorities.map((p) => p?.nice ?? null) }, 'inference thread priorities');
  metrics.observePool(() => ({ ...pool.stats(), admissionLimit: workers + config.pool.maxQueue }));
  return pool;
}

/**
 * The registry's database, opened first (roles all and registry): its lock makes a second server on
 * the same data directory stop before it starts worker threads or anything else. The lock is held
 * until the store closes (or the process ends).
 */
function openStore({ config, resources }: Context): RegistryStore {
  const dataDir = resolve(config.registry.dataDir);
  return resources.add(RegistryStore.open(dataDir, defaultMigrationsDir(), { lock: true }), (s) => s.close());
}

/** The registry's blobs, audit log and tokens, and the ModelRegistry over them and the store (roles all and registry). */
function openRegistry(
  ctx: Context,
  store: RegistryStore,
  pool: InferencePool,
): { registry: ModelRegistry; access: AccessControl } {
  const { config, log, metrics, resources } = ctx;
  const dataDir = resolve(config.registry.dataDir);
  const audit = new AuditLog(store.database);
  const access = createAccess(ctx, new TokenStore(store.database, { audit }), audit);
  const registry = resources.add(
    new ModelRegistry(
      store,
      new BlobStore(dataDir, ctx.keys),
      pool,
      {
        maxUploadBytes: config.registry.maxUploadBytes,
        load: config.pool,
        replicaTimeoutMs: config.fleet.replicaTimeoutMs,
        rolloutTimeoutMs: config.fleet.rolloutTimeoutMs,
        audit: (e) => access.record(e.principal, e.peer ?? '', e.action, e.target ?? '', e.outcome, e.reason),
        metrics,
        datasets: {
          maxDatasetBytes: config.registry.maxDatasetBytes,
          maxDatasetFiles: config.registry.maxDatasetFiles,
          maxFileBytes: config.limits.maxImageBytes,
        },
        prep: imagePrep(config),
        canary: config.canary,
      },
      log,
    ),
    (r) => r.close(),
  );
  // The first promote check: gates are judged before anything is loaded for the promote.
  registry.addPromoteCheck(promotionGates((model, version) => registry.evidence(model, version), config.promotion));
  metrics.observeFleet(() => ({
    replicas: registry.fleet.all().map(({ report, reportedAt }) => ({
      replica: report.replica,
      reportAgeSeconds: (Date.now() - reportedAt) / 1000,
      versions: report.models.flatMap((m) =>
        m.versions.map((v) => ({ model: m.model, version: String(v.version), state: v.state })),
      ),
    })),
  }));
  return { registry, access };
}

/** Tokens and roles: the registry's database or a replica's mirror, plus the bootstrap and replica tokens from files. */
function createAccess({ config, log }: Context, tokens: TokenSource, audit: AuditLog | null): AccessControl {
  const { auth } = config;
  return new AccessControl({
    enabled: auth.enabled,
    maxFailuresPerMinute: auth.maxFailuresPerMinute,
    tokens,
    audit,
    staticTokens: [
      ...(auth.bootstrapTokenFile
        ? [
            {
              token: readSecret(auth.bootstrapTokenFile, 'auth.bootstrapTokenFile'),
              name: 'bootstrap',
              role: 'admin' as const,
            },
          ]
        : []),
      ...(auth.replicaTokenFile
        ? [
            {
              token: readSecret(auth.replicaTokenFile, 'auth.replicaTokenFile'),
              name: 'replica',
              role: 'viewer' as const,
              extra: ['replicate' as const],
            },
          ]
        : []),
    ],
    log,
  });
}

/** What serves models, the same in roles all and inference: loaded versions, the follower, detection and drift monitoring. */
function createServing(
  ctx: Context,
  pool: InferencePool,
  peer: RegistryPeer,
  profiles: Pick<DriftMonitorDeps, 'store' | 'remote'>,
) {
  const { config, log, metrics, resources } = ctx;
  const models = new ModelManager(pool, log, metrics);
  // The configured default goes first, so it is the default model whatever the registry holds.
  const first = config.defaultModel ?? config.models[0]?.name;
  if (first) models.setDefaultModel(first, { allowUnloaded: true });
  // Shadow and canary tallies: counted by detection, sent to the registry with every report.
  const tallies = new TrialTallies();
  const running = (model: string, id: number) => {
    const p = follower.model(model);
    return p?.shadow?.id === id || p?.canary?.id === id;
  };
  const follower: ModelFollower = resources.add(
    new ModelFollower(
      peer,
      models,
      {
        replica: config.fleet.replicaName ?? hostname(),
        keepRollbackWarm: config.registry.keepRollbackWarm,
        load: config.pool,
        retryMinMs: config.fleet.retryMinMs,
        retryMaxMs: config.fleet.retryMaxMs,
        reportIntervalMs: config.fleet.reportIntervalMs,
        trials: () => tallies.report(running),
      },
      log,
    ),
    (f) => f.stop(),
  );
  // Reference profiles live in the registry: in this process's database, or over gRPC on a replica.
  const drift = resources.add(new DriftMonitor(config.drift, { ...profiles, metrics, log }), (d) => d.close());
  follower.onModelEvent((c) => drift.onModelChange(c));
  const shadow = new ShadowRunner({
    models,
    catalog: follower,
    pool,
    tallies,
    prep: imagePrep(config),
    settings: config.shadow,
    log,
    metrics,
  });
  const detect = new DetectService(
    models,
    pool,
    { defaults: config.defaults, limits: config.limits, preprocess: config.preprocess },
    config.drift.enabled ? drift : undefined,
    { tallies, shadow },
  );
  return {
    models,
    follower,
    drift,
    detect,
    /** Not ready until every promoted model has a version serving here, and the default model does. */
    notReady: () =>
      follower.unserved() ?? (models.isReady() ? null : 'the default model has no active, warmed-up version yet'),
    /** The Open Inference Protocol over this detection stack; its repository extension maps onto `registry` (null: a replica's). */
    oip: (registry: ModelRegistry | null) => {
      const tensors = new TensorService(models, pool);
      return {
        service: new OpenInference(detect, tensors, config.oip),
        repository: new ModelRepository(registry, tensors),
        serverVersion: SERVICE_VERSION,
      };
    },
    /** Starts following the registry; `changed` hears every change that can move readiness. */
    watch(changed: () => void) {
      models.onChange(changed);
      follower.onChange(changed);
      follower.start();
    },
  };
}

/**
 * `serve --model` and the config's models: registered (if new) and promoted when their model has no
 * active version. A file that cannot be served is a mistake in the command or the configuration:
 * said naming the model and the file.
 */
async function registerConfiguredModels(config: Config, registry: ModelRegistry): Promise<void> {
  for (const m of config.models) {
    try {
      await registry.registerFile(m.name, m.path, { labelsPath: m.labels, family: m.family });
    } catch (e) {
      const code = e instanceof SightlineError && e.code !== 'UNSUPPORTED_MODEL' ? e.code : 'INVALID_INPUT';
      // One line: ONNX Runtime's messages end in a newline.
      const why = (e instanceof Error ? e.message : String(e))
        .replace(/\s*\n\s*/g, ' ')
        .trim()
        .replace(/\.$/, '');
      throw new SightlineError(
        code,
        `model ${m.name} (${m.path}) cannot be served: ${why}; give a model file that ONNX Runtime loads ` +
          'and whose outputs match a supported family (README, top; --family when it is not detected), ' +
          'or start without it',
        { model: m.name, path: m.path },
        { cause: e },
      );
    }
  }
}

/** How images are read for anything but a live request (shadow runs, evaluations): the serving limits and preprocessing. */
function imagePrep(config: Config): ImagePrep {
  return {
    limits: { maxBytes: config.limits.maxImageBytes, maxPixels: config.limits.maxImagePixels },
    options: config.preprocess,
  };
}

/** A secret from a file (a mounted Kubernetes Secret): trimmed, and never logged. */
function readSecret(path: string, what: string): string {
  try {
    const s = readFileSync(path, 'utf8').trim();
    if (!s) throw new Error('the file is empty');
    return s;
  } catch (e) {
    throw new SightlineError('INVALID_INPUT', `${what}: cannot read ${path}: ${(e as Error).message}`);
  }
}
