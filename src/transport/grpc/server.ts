/**
 * Binds the gRPC server: the services of this role (Detector, Registry, Monitoring), grpc.health.v1
 * and server reflection, behind TLS and the auth interceptor when configured; drains on shutdown.
 */
import { Server } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath, type ServingStatus } from 'grpc-health-check';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DetectorService } from '../../generated/sightline/v1/detector.js';
import { RegistryService } from '../../generated/sightline/v1/registry.js';
import { MonitoringService } from '../../generated/sightline/v1/monitoring.js';
import { GRPCInferenceServiceService } from '../../generated/inference/open_inference_grpc.js';
import { listenError } from '../../errors.js';
import type { AccessControl, DetectService, DriftMonitor, ModelRegistry } from '../../serving/index.js';
import { admissionInterceptor } from './admission.js';
import { authInterceptor } from './auth.js';
import { applyReceiveWindow } from './flow-control.js';
import { serverCredentials, type TlsOptions } from './tls.js';
import type { Logger } from '../../telemetry/logger.js';
import { detectorHandlers, type StreamConfig } from './detector.js';
import type { DetectorTelemetry } from './observe.js';
import { registryHandlers } from './registry.js';
import { monitoringHandlers } from './monitoring.js';
import { inferenceHandlers } from './inference.js';
import type { ModelRepository, OpenInference } from '../oip/index.js';

/** proto/ at the package root (this file runs as dist/src/transport/grpc/server.js). */
const PROTO_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'proto');

/** Time before the end of the shutdown grace period at which open streams are asked to wind down. */
const STREAM_DRAIN_MS = 1000;

export interface GrpcServerOptions {
  host: string;
  port: number;
  maxReceiveMessageBytes: number;
  maxSendMessageBytes: number;
  /** 0 = unlimited. */
  maxConnectionAgeMs: number;
  maxConnectionAgeGraceMs: number;
  keepaliveTimeMs: number;
  /** HTTP/2 receive window per stream and per connection (see flow-control.ts). */
  flowControlWindowBytes: number;
  /** Longest a refusal to a client that ignored its retry-after is held (refusal-pacing.ts); 0: never. */
  refusalHoldMaxMs: number;
  tls: TlsOptions;
}

export interface GrpcServer {
  readonly port: number;
  readonly health: HealthImplementation;
  setServing(status: ServingStatus): void;
  /** NOT_SERVING, stops accepting calls, waits for in-flight ones up to graceMs, then cancels the rest. */
  shutdown(graceMs: number): Promise<void>;
  forceShutdown(): void;
}

function reflection(): ReflectionService {
  const files = [
    'sightline/v1/detector.proto',
    'sightline/v1/registry.proto',
    'sightline/v1/monitoring.proto',
    'inference/open_inference_grpc.proto',
  ];
  const pkg = protoLoader.loadSync([...files.map((f) => join(PROTO_DIR, f)), healthProtoPath], {
    includeDirs: [PROTO_DIR],
    keepCase: true,
  });
  return new ReflectionService(pkg);
}

/** The services this process serves: depends on its role (all, registry, inference). */
export interface GrpcServices {
  detect?: DetectService;
  registry?: ModelRegistry;
  /** Metrics and tracing for Detector calls; none when absent. */
  telemetry?: DetectorTelemetry;
  /** Drift monitoring (sightline.v1.Monitoring, served wherever Detector is). */
  drift?: DriftMonitor;
  /** Tokens and roles; no checks when absent. */
  access?: AccessControl;
  /** The Open Inference Protocol (inference.GRPCInferenceService), served wherever Detector is. */
  oip?: { service: OpenInference; repository: ModelRepository; serverVersion: string };
}

export async function startGrpcServer(
  opts: GrpcServerOptions,
  streamCfg: StreamConfig,
  services: GrpcServices,
  log: Logger,
): Promise<GrpcServer> {
  const server = new Server({
    'grpc.max_receive_message_length': opts.maxReceiveMessageBytes,
    'grpc.max_send_message_length': opts.maxSendMessageBytes,
    // Long-lived HTTP/2 connections pin a client to one replica; ending them after a while (with a
    // grace period for calls in flight) lets clients rebalance when replicas are added.
    ...(opts.maxConnectionAgeMs > 0 && {
      'grpc.max_connection_age_ms': opts.maxConnectionAgeMs,
      'grpc.max_connection_age_grace_ms': opts.maxConnectionAgeGraceMs,
    }),
    'grpc.keepalive_time_ms': opts.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': 20_000,
    // Authentication first (a stranger learns nothing, not even that the server is busy), then the
    // early refusal of Detect calls while at capacity.
    interceptors: [
      ...(services.access ? [authInterceptor(services.access, log)] : []),
      ...(services.detect
        ? [admissionInterceptor(services.detect, services.telemetry, log, opts.refusalHoldMaxMs)]
        : []),
    ],
  });
  const serviceNames: string[] = [];
  const detector = services.detect ? detectorHandlers(services.detect, streamCfg, log, services.telemetry) : null;
  if (detector) {
    server.addService(DetectorService, detector.impl);
    serviceNames.push('sightline.v1.Detector');
  }
  if (services.detect) {
    server.addService(MonitoringService, monitoringHandlers(services.detect, services.drift, log, services.access));
    serviceNames.push('sightline.v1.Monitoring');
  }
  // Readiness as grpc.health.v1 reports it for "" (OIP ServerReady and ModelReady answer the same).
  let serving: ServingStatus = 'NOT_SERVING';
  if (services.detect && services.oip) {
    const deps = {
      oip: services.oip.service,
      repository: services.oip.repository,
      detect: services.detect,
      isServing: () => serving === 'SERVING',
      serverVersion: services.oip.serverVersion,
      access: services.access,
    };
    server.addService(GRPCInferenceServiceService, inferenceHandlers(deps, log, services.telemetry));
    serviceNames.push('inference.GRPCInferenceService');
  }
  const registry = services.registry
    ? registryHandlers(services.registry, log, () => services.access?.tokenDigests() ?? [])
    : null;
  if (registry) {
    server.addService(RegistryService, registry.impl);
    serviceNames.push('sightline.v1.Registry');
  }
  // "liveness": SERVING whenever the process answers (for liveness and startup probes); "" and each
  // service: SERVING only when ready to take traffic.
  const health = new HealthImplementation({
    liveness: 'SERVING',
    '': 'NOT_SERVING',
    ...Object.fromEntries(serviceNames.map((s) => [s, 'NOT_SERVING'])),
  });
  health.addToServer(server);
  reflection().addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`,
      serverCredentials(opts.tls, opts.host, log),
      (err, p) =>
        err
          ? reject(listenError(err, 'gRPC', `${opts.host}:${opts.port}`, '--port, grpc.port or SIGHTLINE_GRPC__PORT'))
          : resolve(p),
    ),
  );
  applyReceiveWindow(server, opts.flowControlWindowBytes, log);
  log.info({ event: 'grpc_listening', host: opts.host, port }, `gRPC listening on ${opts.host}:${port}`);

  const setServing = (s: ServingStatus) => {
    serving = s;
    health.setStatus('', s);
    for (const name of serviceNames) health.setStatus(name, s);
  };

  return {
    port,
    health,
    setServing,
    async shutdown(graceMs: number) {
      // Probes and balancers notice first. No new calls are accepted; calls in flight, streams
      // included, may finish on their own. Near the end of the grace period, streams still open (a
      // camera never half-closes) stop reading, answer the frames they hold and end with UNAVAILABLE;
      // whatever is left when the grace period is over is cancelled.
      setServing('NOT_SERVING');
      registry?.endWatches();
      const drainAt = Math.max(0, graceMs - STREAM_DRAIN_MS);
      await new Promise<void>((resolve) => {
        const drainTimer = setTimeout(() => detector?.drainStreams(), drainAt);
        const forceTimer = setTimeout(() => {
          log.warn({ event: 'shutdown_forced', graceMs }, 'grace period over: cancelling remaining calls');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(drainTimer);
          clearTimeout(forceTimer);
          resolve();
        });
      });
    },
    forceShutdown: () => server.forceShutdown(),
  };
}
