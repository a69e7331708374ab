/**
 * The admin HTTP port, apart from gRPC: GET /metrics (Prometheus text format), /healthz (the process
 * is up) and /readyz (a model is ready and the server is not shutting down). Plain node:http; it
 * reads no request body and serves nothing else.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { listenError } from '../errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

export interface AdminServerOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  metrics: Metrics;
  isReady: () => boolean;
  /** One line saying why the server is not ready, for the /readyz body. */
  notReadyReason?: () => string;
  log: Logger;
}

export interface AdminServer {
  readonly port: number;
  close(): Promise<void>;
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
  head = false,
): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(head ? undefined : body);
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { metrics, log } = opts;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.setHeader('allow', 'GET, HEAD');
      return send(res, 405, 'method not allowed\n');
    }
    switch (path) {
      case '/metrics':
        metrics.scrape().then(
          (text) => send(res, 200, text, PROMETHEUS_CONTENT_TYPE, head),
          (e: unknown) => {
            log.error({ event: 'metrics_scrape_failed', err: e }, 'metrics scrape failed');
            send(res, 500, 'metrics collection failed\n');
          },
        );
        return;
      case '/healthz':
        return send(res, 200, 'ok\n', undefined, head);
      case '/readyz':
        if (opts.isReady()) return send(res, 200, 'ready\n', undefined, head);
        return send(res, 503, `not ready: ${opts.notReadyReason?.() ?? 'no model is ready'}\n`, undefined, head);
      default:
        return send(res, 404, 'not found: try /metrics, /healthz or /readyz\n');
    }
  };
  const server = createServer(handle);
  server.keepAliveTimeout = 65_000; // longer than a typical scrape interval, so scrapers reuse connections
  await new Promise<void>((resolve, reject) => {
    const fail = (e: Error) =>
      reject(
        listenError(
          e,
          'admin HTTP',
          `${opts.host}:${opts.port}`,
          '--admin-port, admin.port or SIGHTLINE_ADMIN__PORT (admin.enabled: false turns it off)',
        ),
      );
    server.once('error', fail);
    server.listen(opts.port, opts.host, () => {
      server.off('error', fail);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info(
    { event: 'admin_listening', host: opts.host, port },
    `admin HTTP (/metrics, /healthz, /readyz) on ${opts.host}:${port}`,
  );
  let closing: Promise<void> | null = null;
  return {
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      })),
  };
}
