/** The one map from SightlineError codes to gRPC statuses. Unmapped errors are logged and hidden. */
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { SightlineError, type ErrorCode } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';

const TO_GRPC: Record<ErrorCode, status> = {
  INVALID_INPUT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  NOT_READY: status.UNAVAILABLE,
  OVERLOADED: status.RESOURCE_EXHAUSTED,
  PRECONDITION: status.FAILED_PRECONDITION,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  DEADLINE: status.DEADLINE_EXCEEDED,
  CANCELLED: status.CANCELLED,
  UNSUPPORTED_MODEL: status.FAILED_PRECONDITION,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  INTERNAL: status.INTERNAL,
};

/** Used when an OVERLOADED error carries no estimate of its own. */
const DEFAULT_RETRY_AFTER_MS = 100;

export function toStatus(e: unknown, log: Logger): Partial<StatusObject> {
  if (e instanceof SightlineError) {
    const metadata = new Metadata();
    // Machine-readable back-off hint for clients told the server is at capacity: our own trailer, and
    // gRPC's retry pushback (gRFC A6), which clients with a retry policy honour on their own.
    if (e.code === 'OVERLOADED') {
      const ms = String(e.fields.retryAfterMs ?? DEFAULT_RETRY_AFTER_MS);
      metadata.set('retry-after-ms', ms);
      metadata.set('grpc-retry-pushback-ms', ms);
    }
    if (e.code === 'INTERNAL') log.error({ err: e }, 'internal error');
    return { code: TO_GRPC[e.code], details: e.code === 'INTERNAL' ? 'internal error' : e.message, metadata };
  }
  log.error({ err: e }, 'unmapped error');
  return { code: status.INTERNAL, details: 'internal error', metadata: new Metadata() };
}

export function grpcCodeOf(e: unknown): status {
  return e instanceof SightlineError ? TO_GRPC[e.code] : status.INTERNAL;
}
