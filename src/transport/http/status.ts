/**
 * The one map from SightlineError codes to HTTP statuses (beside transport/grpc/status.ts for gRPC):
 * the statuses the standard gRPC ↔ HTTP mapping gives the same codes. Unmapped errors are logged and hidden.
 */
import { SightlineError, type ErrorCode } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';

const TO_HTTP: Record<ErrorCode, number> = {
  INVALID_INPUT: 400,
  NOT_FOUND: 404,
  NOT_READY: 503,
  OVERLOADED: 429,
  PRECONDITION: 400,
  ALREADY_EXISTS: 409,
  DEADLINE: 504,
  // The client went away (nginx's "client closed request"); nobody reads it, but logs and metrics do.
  CANCELLED: 499,
  UNSUPPORTED_MODEL: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  INTERNAL: 500,
};

/** Used when an OVERLOADED error carries no estimate of its own. */
const DEFAULT_RETRY_AFTER_MS = 100;

export interface HttpError {
  status: number;
  /** The Open Inference Protocol's error object: { "error": message }. */
  body: { error: string };
  headers: Record<string, string>;
}

export function toHttpError(e: unknown, log: Logger): HttpError {
  if (e instanceof SightlineError) {
    const headers: Record<string, string> = {};
    if (e.code === 'OVERLOADED') {
      // Retry-After takes whole seconds; retry-after-ms keeps the estimate, as the gRPC trailer does.
      const ms = Number(e.fields.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS);
      headers['retry-after'] = String(Math.max(1, Math.ceil(ms / 1000)));
      headers['retry-after-ms'] = String(ms);
    }
    if (e.code === 'UNAUTHENTICATED') headers['www-authenticate'] = 'Bearer';
    if (e.code === 'INTERNAL') log.error({ err: e }, 'internal error');
    return { status: TO_HTTP[e.code], body: { error: e.code === 'INTERNAL' ? 'internal error' : e.message }, headers };
  }
  // Errors of the HTTP framework itself (a body over the limit, malformed JSON, a bad content type) carry a 4xx status.
  const status = (e as { statusCode?: unknown } | null)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500)
    return { status, body: { error: (e as Error).message }, headers: {} };
  log.error({ err: e }, 'unmapped error');
  return { status: 500, body: { error: 'internal error' }, headers: {} };
}
