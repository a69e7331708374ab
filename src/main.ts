/**
 * Composition root: config → registry → pool → models → serving → gRPC. The only module that wires
 * layers together; the CLI starts a server through startSightline().
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Config } from './config/index.js';
import { InferencePool } from './inference/index.js';
import { BlobStore, defaultMigrationsDir, RegistryStore } from './registry/index.js';
import { DetectService, ModelLifecycle, ModelManager } from './serving/index.js';
import { startAdminServer, type AdminServer } from './telemetry/admin-http.js';
import type { Logger } from './telemetry/logger.js';
import { Metrics } from './telemetry/metrics.js';
import { initTracing, type SpanExporter, type Tracing } from './telemetry/tracing.js';
import { startGrpcServer, type GrpcServer } from './transport/grpc/server.js';

export interface Sightline {
  readonly port: number;
  readonly config: Config;
  readonly models: ModelManager;
  readonly lifecycle: ModelLifecycle;
  readonly pool: InferencePool;
  readonly grpc: GrpcServer;
  readonly metrics: Metrics;
  readonly tracing: Tracing;
  /** The admin HTTP server (/metrics, /healthz, /readyz); null when admin.enabled is false. */
  readonly admin: AdminServer | null;
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
  const dataDir = resolve(config.registry.dataDir);
  const store = RegistryStore.open(dataDir, defaultMigrationsDir());
  const blobs = new BlobStore(dataDir);
  const pool = await InferencePool.create({
    workers: config.pool.workers,
    maxQueue: config.pool.maxQueue,
    onEvent: (e) => log.warn({ event: e.type, worker: e.worker, ...('code' in e ? { code: e.code } : {}) }, `inference ${e.type}`),
  });
  metrics.observePool(() => ({ ...pool.stats(), admissionLimit: config.pool.workers + config.pool.maxQueue }));
  const models = new ModelManager(pool, log, metrics);
  const lifecycle = new ModelLifecycle(store, blobs, models, pool, { maxUploadBytes: config.registry.maxUploadBytes, keepRollbackWarm: config.registry.keepRollbackWarm, load: config.pool }, log);
  const detect = new DetectService(models, pool, { defaults: config.defaults, limits: config.limits, preprocess: config.preprocess });
  let grpc: GrpcServer;
  try {
    grpc = await startGrpcServer(config.grpc, config.stream, { detect, lifecycle, telemetry: { metrics, tracing } }, log);
  } catch (e) {
    await pool.close();
    store.close();
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
        isReady: () => !closing && models.isReady(),
        notReadyReason: () => (closing ? 'shutting down' : 'the default model has no active, warmed-up version yet'),
        log,
      });
    } catch (e) {
      grpc.forceShutdown();
      await pool.close();
      store.close();
      await Promise.all([tracing.shutdown(), metrics.shutdown()]);
      throw e;
    }
  }
  const close = (graceMs = config.shutdownGraceMs) =>
    (closing ??= (async () => {
      log.info({ event: 'shutdown_started', graceMs }, 'shutting down');
      // /readyz answers 503 from here on; /metrics keeps answering until the end.
      await grpc.shutdown(graceMs);
      await pool.close();
      store.close();
      await admin?.close();
      await Promise.all([tracing.shutdown(), metrics.shutdown()]);
      log.info({ event: 'shutdown_complete' }, 'shutdown complete');
    })());

  const ready = (async () => {
    // The configured default goes first so it is the default model whatever the registry holds.
    const first = config.defaultModel ?? config.models[0]?.name;
    if (first) models.setDefaultModel(first, { allowUnloaded: true });
    await lifecycle.start();
    for (const m of config.models) await lifecycle.registerFile(m.name, m.path, { labelsPath: m.labels, family: m.family });
    if (models.isReady()) grpc.setServing('SERVING');
    else log.warn({ event: 'not_ready', defaultModel: first ?? null }, 'no active model version is loaded: health stays NOT_SERVING until one is promoted');
  })();
  ready.catch(() => undefined); // the caller decides what a failed start means
  // Health follows the default model: SERVING once it has a ready active version.
  lifecycle.watch(() => {
    if (!closing && models.isReady()) grpc.setServing('SERVING');
  });
  return { port: grpc.port, config, models, lifecycle, pool, grpc, metrics, tracing, admin, ready, close };
}
