/**
 * Composition root: config → registry → pool → models → serving → gRPC. The only module that wires
 * layers together; the CLI starts a server through startSightline(). The role decides what is wired:
 * all (registry + inference), registry (database, blobs, Registry service), inference (follows a
 * registry over gRPC, serves Detector).
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describeSizing, type Config } from './config/index.js';
import { InferencePool } from './inference/index.js';
import { AuditLog, BlobStore, defaultMigrationsDir, loadKey, RegistryStore, TokenMirror, TokenStore } from './registry/index.js';
import { credentials, Metadata } from '@grpc/grpc-js';
import { AccessControl, DetectService, DriftMonitor, ModelLifecycle, ModelManager, RegistryFollower, TensorService, TokenSync } from './serving/index.js';
import { startAdminServer, type AdminServer } from './telemetry/admin-http.js';
import type { Logger } from './telemetry/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { initTracing, type SpanExporter, type Tracing } from './telemetry/tracing.js';
import { grpcRegistryPeer } from './transport/grpc/registry-peer.js';
import { startGrpcServer, type GrpcServer } from './transport/grpc/server.js';
import { ModelRepository, OpenInference } from './transport/oip/index.js';
import { startHttpServer, type HttpServer } from './transport/http/server.js';
import { SightlineError } from './errors.js';

export interface Sightline {
  readonly port: number;
  readonly config: Config;
  readonly models: ModelManager;
  /** The registry (roles all and registry); null on inference replicas. */
  readonly lifecycle: ModelLifecycle | null;
  /** The registry follower (role inference); null otherwise. */
  readonly follower: RegistryFollower | null;
  readonly pool: InferencePool;
  readonly grpc: GrpcServer;
  readonly metrics: Metrics;
  /** Drift and anomaly monitoring of the versions this process serves. */
  readonly drift: DriftMonitor;
  readonly tracing: Tracing;
  /** The admin HTTP server (/metrics, /healthz, /readyz); null when admin.enabled is false. */
  readonly admin: AdminServer | null;
  /** The HTTP port (Open Inference Protocol REST, /v1/detect); null unless http.enabled (and Detect is served). */
  readonly http: HttpServer | null;
  /** Resolves once every configured model is loaded and the server reports SERVING. */
  readonly ready: Promise<void>;
  /** Graceful stop: NOT_SERVING, drain calls within graceMs, close the pool. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Replaces the configured trace exporter (tests: an in-memory exporter). */
  spanExporter?: SpanExporter;
}

/** package.json's version: service.version in metrics and traces. */
const SERVICE_VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

export async function startSightline(config: Config, log: Logger, opts: StartOptions = {}): Promise<Sightline> {
  const { telemetry } = config;
  const metrics = Metrics.create({ serviceVersion: SERVICE_VERSION, serviceName: telemetry.tracing.serviceName, enabled: telemetry.metrics });
  const tracing = initTracing(telemetry.tracing, { serviceVersion: SERVICE_VERSION, exporter: opts.spanExporter });
  const { role } = config;
  if (role === 'inference' && !config.registry.address) throw new SightlineError('INVALID_INPUT', 'role inference needs registry.address (--registry HOST:PORT)');
  // The registry role loads models only to validate uploads: one worker is enough.
  const workers = role === 'registry' ? 1 : config.pool.workers;
  // A missing or malformed key stops the start: serving nothing beats serving garbage.
  const key = loadKey(config.encryption);
  const previousKeys = (config.encryption.previousKeyFiles ?? []).map((keyFile) => loadKey({ keyFile })!);
  const store = role === 'inference' ? null : RegistryStore.open(resolve(config.registry.dataDir), defaultMigrationsDir(), { lock: true });
  const blobs = store ? new BlobStore(resolve(config.registry.dataDir), { key, previousKeys }) : null;
  const audit = store ? new AuditLog(store.database) : null;
  // Replicas have no database: they check tokens against a mirror synced from the registry, and
  // sync early when a caller presents a token the mirror does not know yet.
  let tokenSync: TokenSync | null = null;
  const mirror = store ? null : new TokenMirror({ onUnknownId: () => tokenSync?.request() });
  const access = new AccessControl({
    enabled: config.auth.enabled,
    maxFailuresPerMinute: config.auth.maxFailuresPerMinute,
    tokens: store ? new TokenStore(store.database, { audit: audit ?? undefined }) : mirror,
    audit,
    staticTokens: [
      ...(config.auth.bootstrapTokenFile ? [{ token: readSecret(config.auth.bootstrapTokenFile, 'auth.bootstrapTokenFile'), name: 'bootstrap', role: 'admin' as const }] : []),
      ...(config.auth.replicaTokenFile ? [{ token: readSecret(config.auth.replicaTokenFile, 'auth.replicaTokenFile'), name: 'replica', role: 'viewer' as const, extra: ['replicate' as const] }] : []),
    ],
    log,
  });
  if (role !== 'registry') log.info({ event: 'pool_sized', ...config.sizing, pool: config.pool }, describeSizing(config.pool, config.sizing));
  const pool = await InferencePool.create({
    workers,
    maxQueue: config.pool.maxQueue,
    workerNice: config.pool.workerNice,
    onEvent: (e) => log.warn({ event: e.type, worker: e.worker, ...('code' in e ? { code: e.code } : {}) }, `inference ${e.type}`),
  });
  const priorities = pool.threadPriorities();
  const skipped = priorities.find((p) => p?.skipped)?.skipped;
  if (config.pool.workerNice > 0 && skipped) log.warn({ event: 'worker_priority_not_set', nice: config.pool.workerNice, reason: skipped }, `inference threads keep the process priority: ${skipped}`);
  else log.info({ event: 'worker_priority', nice: priorities.map((p) => p?.nice ?? null) }, 'inference thread priorities');
  metrics.observePool(() => ({ ...pool.stats(), admissionLimit: config.pool.workers + config.pool.maxQueue }));
  const models = new ModelManager(pool, log, metrics);
  const lifecycle =
    store && blobs
      ? new ModelLifecycle(store, blobs, models, pool, { maxUploadBytes: config.registry.maxUploadBytes, keepRollbackWarm: config.registry.keepRollbackWarm, load: config.pool, serveModels: role === 'all' }, log)
      : null;
  const registryToken = config.registry.tokenFile ? readSecret(config.registry.tokenFile, 'registry.tokenFile') : null;
  const peer =
    role === 'inference'
      ? grpcRegistryPeer({
          address: config.registry.address!,
          credentials: config.registry.caFile ? credentials.createSsl(readFileSync(config.registry.caFile)) : undefined,
          metadata: registryToken ? () => Metadata.fromHttp2Headers({ authorization: `Bearer ${registryToken}` }) : undefined,
        })
      : null;
  const follower = peer
    ? new RegistryFollower(
        peer,
        new BlobStore(resolve(config.registry.cacheDir), { key, previousKeys }),
        models,
        { keepRollbackWarm: config.registry.keepRollbackWarm, maxBlobBytes: config.registry.maxUploadBytes, load: config.pool, retryMinMs: 250, retryMaxMs: 5_000 },
        log,
      )
    : null;
  // Reference profiles live in the registry: in its database here, or over gRPC on an inference replica
  // (which keeps a traffic profile in memory until the registry has one for the version).
  const drift = new DriftMonitor(config.drift, {
    store: lifecycle?.profileStore(),
    remote: peer ?? undefined,
    metrics,
    log,
  });
  follower?.onModelEvent((c) => drift.onModelChange(c));
  const detect = role === 'registry' ? undefined : new DetectService(models, pool, { defaults: config.defaults, limits: config.limits, preprocess: config.preprocess }, config.drift.enabled ? drift : undefined);
  lifecycle?.watch((c) => drift.onModelChange(c));
  // Open Inference Protocol (KServe v2), on the gRPC port and the HTTP port: wherever Detect is served.
  const tensors = detect ? new TensorService(models, pool) : undefined;
  const oip = detect && tensors ? { service: new OpenInference(detect, tensors, config.oip), repository: new ModelRepository(lifecycle, tensors), serverVersion: SERVICE_VERSION } : undefined;
  /** Ready to take traffic: registry role once verified; inference once it serves what the registry says; all once the default model is ready. */
  let registryReady = false;
  const isReady = () => (role === 'registry' ? registryReady : role === 'inference' ? !!follower?.inSync() && models.isReady() : models.isReady());
  let grpc: GrpcServer;
  try {
    grpc = await startGrpcServer({ ...config.grpc, tls: config.tls }, config.stream, { detect, lifecycle: lifecycle ?? undefined, telemetry: { metrics, tracing }, drift, access, oip }, log);
  } catch (e) {
    await pool.close();
    store?.close();
    await Promise.all([tracing.shutdown(), metrics.shutdown()]);
    throw e;
  }
  let closing: Promise<void> | null = null;
  let admin: AdminServer | null = null;
  if (config.admin.enabled) {
    try {
      admin = await startAdminServer({
        host: config.admin.host,
        port: config.admin.port,
        metrics,
        isReady: () => !closing && isReady(),
        notReadyReason: () =>
          closing ? 'shutting down' : role === 'inference' ? 'not yet serving the versions the registry says are active' : role === 'registry' ? 'registry not verified yet' : 'the default model has no active, warmed-up version yet',
        log,
      });
    } catch (e) {
      grpc.forceShutdown();
      await pool.close();
      store?.close();
      await Promise.all([tracing.shutdown(), metrics.shutdown()]);
      throw e;
    }
  }
  // HTTP port: Open Inference Protocol REST and /v1/detect, where Detect is served and http.enabled.
  let http: HttpServer | null = null;
  if (config.http.enabled && detect && oip) {
    const httpReady = () => !closing && isReady();
    try {
      http = await startHttpServer({ ...config.http, tls: config.tls }, { detect, oip: oip.service, isReady: httpReady, serverVersion: SERVICE_VERSION, metrics, access }, log);
    } catch (e) {
      grpc.forceShutdown();
      await admin?.close();
      await pool.close();
      store?.close();
      await Promise.all([tracing.shutdown(), metrics.shutdown()]);
      throw e;
    }
  }
  const close = (graceMs = config.shutdownGraceMs) =>
    (closing ??= (async () => {
      log.info({ event: 'shutdown_started', graceMs }, 'shutting down');
      // /readyz answers 503 from here on; /metrics keeps answering until the end.
      follower?.stop();
      tokenSync?.stop();
      await Promise.all([grpc.shutdown(graceMs), http?.close(graceMs)]);
      drift.close();
      await pool.close();
      store?.close();
      peer?.close();
      await admin?.close();
      await Promise.all([tracing.shutdown(), metrics.shutdown()]);
      log.info({ event: 'shutdown_complete' }, 'shutdown complete');
    })());

  // Health follows readiness: SERVING once this process serves what it should, NOT_SERVING otherwise.
  const updateHealth = () => {
    if (!closing) grpc.setServing(isReady() ? 'SERVING' : 'NOT_SERVING');
  };
  const ready = (async () => {
    // The configured default goes first so it is the default model whatever the registry holds.
    const first = config.defaultModel ?? config.models[0]?.name;
    if (first) models.setDefaultModel(first, { allowUnloaded: true });
    if (lifecycle) {
      await lifecycle.start();
      for (const m of config.models) await lifecycle.registerFile(m.name, m.path, { labelsPath: m.labels, family: m.family });
      registryReady = true;
      lifecycle.watch(updateHealth);
    }
    if (follower) {
      follower.onChange(updateHealth);
      follower.start();
    }
    if (peer && mirror && config.auth.enabled && !closing) {
      tokenSync = new TokenSync({ fetch: () => peer.syncTokens(), apply: (d) => mirror.replace(d), intervalMs: config.auth.tokenSyncIntervalMs, log });
      await tokenSync.start();
    }
    updateHealth();
    if (!isReady() && role !== 'inference') log.warn({ event: 'not_ready', defaultModel: first ?? null }, 'no active model version is loaded: health stays NOT_SERVING until one is promoted');
  })();
  ready.catch(() => undefined); // the caller decides what a failed start means
  return { port: grpc.port, config, models, lifecycle, follower, pool, grpc, metrics, drift, tracing, admin, http, ready, close };
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
