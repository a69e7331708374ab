/**
 * The error vocabulary of Sightline. Core code throws SightlineError with a code; the transport maps
 * codes to gRPC statuses in exactly one place (transport/grpc/status.ts). Knows nothing of gRPC.
 */
export type ErrorCode =
  | 'INVALID_INPUT' // the caller sent something wrong (bad image, threshold out of range)
  | 'NOT_FOUND' // unknown model or version
  | 'NOT_READY' // no model ready yet, or the pool is closing
  | 'OVERLOADED' // queue full
  | 'PRECONDITION' // the system is not in a state that allows the call (pinned unloaded version)
  | 'ALREADY_EXISTS'
  | 'DEADLINE' // the caller's deadline passed before the work ran
  | 'CANCELLED' // the caller went away
  | 'UNSUPPORTED_MODEL' // a model whose inputs/outputs match no known family
  | 'UNAUTHENTICATED' // no valid credentials (never says whether a token exists)
  | 'PERMISSION_DENIED' // valid credentials, but the role does not allow the call
  | 'INTERNAL'; // a bug or an environment failure; details are logged, not returned

export class SightlineError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly fields: Readonly<Record<string, unknown>> = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'SightlineError';
  }

  /** Plain-data form, to cross a worker_threads boundary (instanceof does not survive postMessage). */
  toJSON(): SerializedError {
    return { code: this.code, message: this.message, fields: { ...this.fields } };
  }

  static fromJSON(e: SerializedError): SightlineError {
    return new SightlineError(e.code, e.message, e.fields);
  }
}

export interface SerializedError {
  code: ErrorCode;
  message: string;
  fields: Record<string, unknown>;
}

/** Wraps anything thrown into a SerializedError; unknown errors become INTERNAL with their message kept for logs. */
export function serializeError(e: unknown): SerializedError {
  if (e instanceof SightlineError) return e.toJSON();
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'INTERNAL', message, fields: {} };
}

/**
 * A failed bind, as the operator's to fix when the port is taken or not allowed: names the port and
 * the setting that moves it (`setting`). Anything else is returned unchanged.
 */
export function listenError(e: unknown, what: string, address: string, setting: string): unknown {
  const m = e instanceof Error ? e.message : String(e);
  const why = /EADDRINUSE/.test(m)
    ? 'is already in use (by another Sightline server or another program)'
    : /EACCES/.test(m)
      ? 'may not be opened by this user'
      : null;
  return why
    ? new SightlineError(
        'PRECONDITION',
        `the ${what} port ${address} ${why}: stop what holds it, or choose another port with ${setting}`,
        { address },
        { cause: e },
      )
    : e;
}
