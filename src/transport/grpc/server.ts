/** Binds the gRPC server: Detector, grpc.health.v1 and server reflection; drains on shutdown. */
import { Server, ServerCredentials } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DetectorService } from '../../generated/sightline/v1/detector.js';
import type { DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { detectorHandlers } from './detector.js';

/** proto/ at the package root (this file runs as dist/src/transport/grpc/server.js). */
const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'proto');

export const SERVICE_NAMES = ['sightline.v1.Detector'] as const;

export interface GrpcServerOptions {
  host: string;
  port: number;
  maxReceiveMessageBytes: number;
  maxSendMessageBytes: number;
}

export interface GrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  setServing(status: ServingStatus): void;
  /** Stops accepting calls, waits for in-flight ones up to graceMs, then cancels the rest. */
  shutdown(graceMs: number): Promise<void>;
  forceShutdown(): void;
}

function reflection(): ReflectionService {
  const files = ['sightline/v1/detector.proto'];
  const pkg = protoLoader.loadSync([...files.map((f) => join(PROTO_DIR, f)), healthProtoPath], { includeDirs: [PROTO_DIR], keepCase: true });
  return new ReflectionService(pkg);
}

export async function startGrpcServer(opts: GrpcServerOptions, detect: DetectService, log: Logger): Promise<GrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxReceiveMessageBytes,
    'grpc.max_send_message_length': opts.maxSendMessageBytes,
  });
  server.addService(DetectorService, detectorHandlers(detect, log));
  const health = new HealthImplementation({ '': 'NOT_SERVING', ...Object.fromEntries(SERVICE_NAMES.map((s) => [s, 'NOT_SERVING'])) });
  health.addToServer(server);
  reflection().addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  log.info({ event: 'grpc_listening', host: opts.host, port }, `gRPC listening on ${opts.host}:${port}`);

  const setServing = (s: ServingStatus) => {
    health.setStatus('', s);
    for (const name of SERVICE_NAMES) health.setStatus(name, s);
  };

  return {
    port,
    health,
    setServing,
    async shutdown(graceMs: number) {
      setServing('NOT_SERVING');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          log.warn({ event: 'shutdown_forced', graceMs }, 'grace period over: cancelling remaining calls');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    forceShutdown: () => server.forceShutdown(),
  };
}
