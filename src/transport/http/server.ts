/**
 * The HTTP port (http.enabled): the Open Inference Protocol's REST routes and POST /v1/detect, on
 * fastify (routing, body limits, content-type parsing, multipart and graceful close from a well-kept
 * framework instead of hand-written parsing). Same TLS files, tokens and roles, admission, status
 * mapping and metrics as the gRPC port. Every request gets one AbortSignal: its deadline
 * (http.requestTimeoutMs) or the client going away stop unstarted work, as on gRPC.
 */
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { listenError, SightlineError } from '../../errors.js';
import type { AccessControl, DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import type { Metrics } from '../../telemetry/metrics.js';
import type { TlsOptions } from '../grpc/tls.js';
import type { OpenInference } from '../oip/index.js';
import { authorize, ROUTE_CAPABILITY, routeKey } from './auth.js';
import { detectRoute } from './detect.js';
import { oipRoutes } from './oip.js';
import { toHttpError } from './status.js';

export interface HttpServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  maxBodyBytes: number;
  requestTimeoutMs: number;
  tls: TlsOptions;
}

export interface HttpServices {
  detect: DetectService;
  oip: OpenInference;
  /** Ready to take traffic (the same answer as /readyz and grpc health). */
  isReady: () => boolean;
  serverVersion: string;
  metrics: Metrics;
  /** Tokens and roles; no checks when absent. */
  access?: AccessControl;
}

export interface HttpServer {
  readonly port: number;
  /** Stops accepting requests (new ones get 503), lets those in flight finish within graceMs, then closes. */
  close(graceMs: number): Promise<void>;
}

/** Routes whose requests take a place in the admission budget: refused from their headers when full. */
const ADMITTED = new Set(Object.keys(ROUTE_CAPABILITY).filter((k) => k.startsWith('POST ')));

/** A client's own x-request-id is kept when it is short and plain (as on gRPC); otherwise one is generated. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** TLS options for node:https from the same PEM files as gRPC (mutual TLS when clientCaFile is set). */
function secureContext(tls: TlsOptions): {
  key: Buffer;
  cert: Buffer;
  ca?: Buffer;
  requestCert: boolean;
  rejectUnauthorized: boolean;
} {
  for (const [what, file] of [
    ['tls.certFile', tls.certFile],
    ['tls.keyFile', tls.keyFile],
  ] as const) {
    if (!file) throw new SightlineError('INVALID_INPUT', `tls.enabled needs ${what}`);
  }
  const ca = tls.clientCaFile ? readFileSync(tls.clientCaFile) : undefined;
  return {
    key: readFileSync(tls.keyFile!),
    cert: readFileSync(tls.certFile!),
    ...(ca ? { ca } : {}),
    requestCert: !!ca,
    rejectUnauthorized: !!ca,
  };
}

export async function startHttpServer(
  opts: HttpServerOptions,
  services: HttpServices,
  log: Logger,
): Promise<HttpServer> {
  const signals = new WeakMap<FastifyRequest, AbortSignal>();
  const app = Fastify({
    logger: false,
    bodyLimit: opts.maxBodyBytes,
    ...(opts.tls.enabled ? { https: secureContext(opts.tls) } : {}),
    genReqId: (req) => {
      const id = req.headers['x-request-id'];
      return typeof id === 'string' && CLIENT_REQUEST_ID.test(id) ? id : randomUUID();
    },
    // Answer 503 to requests arriving while the server closes; the ones in flight finish.
    return503OnClosing: true,
  });
  const scheme = opts.tls.enabled ? 'https' : 'http';
  const signalOf = (req: FastifyRequest) => signals.get(req)!;

  app.addHook('onRequest', async (req, reply) => {
    const ac = new AbortController();
    const timer = setTimeout(
      () =>
        ac.abort(
          new SightlineError(
            'DEADLINE',
            `the request took longer than ${opts.requestTimeoutMs} ms (http.requestTimeoutMs)`,
          ),
        ),
      opts.requestTimeoutMs,
    );
    timer.unref();
    signals.set(req, ac.signal);
    // The response closes once sent, or when the client closed the connection first: a cancellation, as on gRPC.
    reply.raw.once('close', () => {
      clearTimeout(timer);
      if (!reply.raw.writableFinished) ac.abort(new SightlineError('CANCELLED', 'the client closed the connection'));
    });
    reply.header('x-request-id', req.id);
  });
  // Authentication first (a stranger learns nothing, not even that the server is busy), then the early
  // refusal of work while at capacity: both before the body is read.
  if (services.access) app.addHook('onRequest', authorize(services.access, log));
  app.addHook('onRequest', async (req, reply) => {
    if (!ADMITTED.has(routeKey(req))) return;
    const refusal = services.detect.refusal();
    if (!refusal) return;
    const e = toHttpError(refusal, log);
    await reply.code(e.status).headers(e.headers).send(e.body);
  });
  app.addHook('onResponse', async (req, reply) => {
    services.metrics.observeHttp({
      method: req.method,
      route: req.routeOptions.url ?? '',
      status: reply.statusCode,
      scheme,
      seconds: reply.elapsedTime / 1000,
    });
    if (log.isLevelEnabled('debug'))
      log.debug(
        {
          event: 'http',
          requestId: req.id,
          method: req.method,
          route: req.routeOptions.url ?? req.url.split('?')[0],
          status: reply.statusCode,
          ms: reply.elapsedTime,
        },
        'http request',
      );
  });
  app.setErrorHandler(async (err: unknown, _req: FastifyRequest, reply: FastifyReply) => {
    const e = toHttpError(err, log);
    return reply.code(e.status).headers(e.headers).send(e.body);
  });
  app.setNotFoundHandler(async (req, reply) =>
    reply.code(404).send({
      error: `no route ${req.method} ${req.url.split('?')[0]}: the HTTP port serves /v2/... (Open Inference Protocol) and POST /v1/detect`,
    }),
  );

  oipRoutes(app, {
    oip: services.oip,
    isReady: services.isReady,
    serverVersion: services.serverVersion,
    metrics: services.metrics,
    signalOf,
  });
  detectRoute(app, { detect: services.detect, metrics: services.metrics, maxBodyBytes: opts.maxBodyBytes, signalOf });

  await app.listen({ host: opts.host, port: opts.port }).catch((e: unknown) => {
    throw listenError(
      e,
      'HTTP',
      `${opts.host}:${opts.port}`,
      '--http-port, http.port or SIGHTLINE_HTTP__PORT (http.enabled: false turns it off)',
    );
  });
  const port = (app.server.address() as AddressInfo).port;
  if (!opts.tls.enabled && !/^(127\.|localhost$|::1$)/.test(opts.host))
    log.warn(
      { event: 'plaintext_http', host: opts.host },
      `HTTP is plaintext on ${opts.host}: enable tls in production`,
    );
  log.info(
    { event: 'http_listening', host: opts.host, port, tls: opts.tls.enabled },
    `HTTP (Open Inference Protocol REST, /v1/detect) on ${scheme}://${opts.host}:${port}`,
  );

  // The PEM files are re-read when they change (a rotated Kubernetes Secret), as on the gRPC port.
  let reload: NodeJS.Timeout | undefined;
  if (opts.tls.enabled) {
    const stamp = () =>
      [opts.tls.certFile, opts.tls.keyFile, opts.tls.clientCaFile]
        .map((f) => (f ? statSync(f, { throwIfNoEntry: false })?.mtimeMs : 0))
        .join('/');
    let last = stamp();
    reload = setInterval(() => {
      const now = stamp();
      if (now === last) return;
      try {
        (app.server as import('node:https').Server).setSecureContext(secureContext(opts.tls));
        last = now;
        log.info({ event: 'http_tls_reloaded' }, 'HTTP TLS certificate reloaded');
      } catch (e) {
        log.warn(
          { event: 'http_tls_reload_failed', err: (e as Error).message },
          'HTTP TLS files changed but could not be loaded; keeping the previous ones',
        );
      }
    }, opts.tls.reloadCheckMs);
    reload.unref();
  }

  let closing: Promise<void> | null = null;
  return {
    port,
    close: (graceMs) =>
      (closing ??= (async () => {
        clearInterval(reload);
        const force = setTimeout(() => app.server.closeAllConnections(), graceMs);
        await app.close();
        clearTimeout(force);
      })()),
  };
}
