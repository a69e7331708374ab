/**
 * Authentication and authorisation of the HTTP port, with the same AccessControl (tokens, roles,
 * failed-auth lockout, audit of denials) as the gRPC port: one table says which capability each route
 * needs, and a hook enforces it before the body is read. A route missing here needs administer
 * (fail closed).
 */
import { isIPv6 } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AccessControl, Capability } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { toHttpError } from './status.js';

export const ROUTE_CAPABILITY: Readonly<Record<string, Capability | 'public'>> = {
  // Probes (the kubelet, load balancers) carry no token, as grpc.health.v1 and OIP ServerLive/ServerReady.
  'GET /v2/health/live': 'public',
  'GET /v2/health/ready': 'public',
  'GET /v2': 'view',
  'GET /v2/models/:model': 'view',
  'GET /v2/models/:model/versions/:version': 'view',
  'GET /v2/models/:model/ready': 'view',
  'GET /v2/models/:model/versions/:version/ready': 'view',
  'POST /v2/models/:model/infer': 'infer',
  'POST /v2/models/:model/versions/:version/infer': 'infer',
  'POST /v1/detect': 'infer',
};

/** "GET /v2/models/:model": the route template a request matched (HEAD as GET); "" when none did. */
export function routeKey(req: FastifyRequest): string {
  const url = req.routeOptions.url;
  return url ? `${req.method === 'HEAD' ? 'GET' : req.method} ${url}` : '';
}

/** The peer as grpc-js writes it, so failures from one address are counted together on both ports. */
const peerOf = (req: FastifyRequest) =>
  `${isIPv6(req.ip) ? `ipv6:[${req.ip}]` : `ipv4:${req.ip}`}:${req.socket.remotePort ?? 0}`;

function certSubject(req: FastifyRequest): string | null {
  const socket = req.socket as Partial<TLSSocket>;
  if (!socket.authorized || !socket.getPeerCertificate) return null;
  const cn = socket.getPeerCertificate().subject?.CN;
  return (Array.isArray(cn) ? cn[0] : cn) ?? null;
}

/** onRequest hook: refuses the request (401, 403) before its body is read. */
export function authorize(access: AccessControl, log: Logger) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const key = routeKey(req);
    if (!key) return; // no route: 404 follows
    const decision = access.authorize(
      {
        method: `HTTP ${key}`,
        peer: peerOf(req),
        authorization: req.headers.authorization,
        certSubject: certSubject(req),
      },
      ROUTE_CAPABILITY[key] ?? 'administer',
    );
    if (decision.ok) return;
    const e = toHttpError(decision.error, log);
    await reply.code(e.status).headers(e.headers).send(e.body);
  };
}
