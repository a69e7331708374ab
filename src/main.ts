/**
 * Composition root: config → pool → models → serving → gRPC. The only module that wires layers
 * together; the CLI starts a server through startSightline().
 */
import type { Config } from './config/index.js';
import { InferencePool } from './inference/index.js';
import { DetectService, loadModelFile, ModelManager } from './serving/index.js';
import type { Logger } from './telemetry/logger.js';
import { startGrpcServer, type GrpcServer } from './transport/grpc/server.js';

export interface Sightline {
  readonly port: number;
  readonly config: Config;
  readonly models: ModelManager;
  readonly pool: InferencePool;
  readonly grpc: GrpcServer;
  /** Resolves once every configured model is loaded and the server reports SERVING. */
  readonly ready: Promise<void>;
  /** Graceful stop: NOT_SERVING, drain calls within graceMs, close the pool. Idempotent. */
  close(graceMs?: number): Promise<void>;
}

export async function startSightline(config: Config, log: Logger): Promise<Sightline> {
  const pool = await InferencePool.create({
    workers: config.pool.workers,
    maxQueue: config.pool.maxQueue,
    onEvent: (e) => log.warn({ event: e.type, worker: e.worker, ...('code' in e ? { code: e.code } : {}) }, `inference ${e.type}`),
  });
  const models = new ModelManager(pool, log);
  const detect = new DetectService(models, pool, { defaults: config.defaults, limits: config.limits, preprocess: config.preprocess });
  let grpc: GrpcServer;
  try {
    grpc = await startGrpcServer(config.grpc, config.stream, detect, log);
  } catch (e) {
    await pool.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  const close = (graceMs = config.shutdownGraceMs) =>
    (closing ??= (async () => {
      log.info({ event: 'shutdown_started', graceMs }, 'shutting down');
      await grpc.shutdown(graceMs);
      await pool.close();
      log.info({ event: 'shutdown_complete' }, 'shutdown complete');
    })());

  const ready = (async () => {
    for (const m of config.models) await loadModelFile(models, m, config.pool);
    for (const m of config.models) models.activate(m.name, '1');
    if (config.defaultModel) models.setDefaultModel(config.defaultModel);
    if (models.isReady()) grpc.setServing('SERVING');
  })();
  ready.catch(() => undefined); // the caller decides what a failed start means
  return { port: grpc.port, config, models, pool, grpc, ready, close };
}
