/**
 * How every command reports a failure: one line, `sightline: <what is wrong>`, and a non-zero exit
 * status (2 for usage and configuration mistakes, 1 otherwise). gRPC errors read `CODE: details` with
 * the status name (UNAVAILABLE, not 14). The stack is printed only with `--log-level debug` (or trace,
 * or SIGHTLINE_LOG__LEVEL): an everyday mistake is not a crash.
 */
import { status } from '@grpc/grpc-js';
import { SightlineError } from '../errors.js';

const DEBUG_LEVELS = new Set(['debug', 'trace']);

/** Whether the user asked for debug output: `--log-level debug|trace` anywhere, or the config variable. */
function debugRequested(argv: readonly string[] = process.argv, env: NodeJS.ProcessEnv = process.env): boolean {
  const i = argv.indexOf('--log-level');
  const flag = i >= 0 ? argv[i + 1] : argv.find((a) => a.startsWith('--log-level='))?.slice('--log-level='.length);
  return DEBUG_LEVELS.has(flag ?? env.SIGHTLINE_LOG__LEVEL ?? '');
}

interface GrpcError {
  code: status;
  details: string;
}

const isGrpcError = (e: unknown): e is GrpcError =>
  e instanceof Error &&
  typeof (e as Partial<GrpcError>).code === 'number' &&
  typeof (e as Partial<GrpcError>).details === 'string' &&
  'metadata' in e;

interface SystemError {
  code: string;
  syscall?: string;
  path?: string;
  message: string;
}

const isSystemError = (e: unknown): e is SystemError =>
  e instanceof Error &&
  typeof (e as Partial<SystemError>).code === 'string' &&
  typeof (e as Partial<SystemError>).syscall === 'string';

/** grpc-js's words for "no server could be reached", with the socket error after "Last error:". */
const NOT_CONNECTED =
  /^(?:\w+: )?No connection established(?:\. Last error: (?:Error: )?(.*?)\.?(?: Resolution note: ?(.*))?)?$|^No addresses resolved|^Name resolution failed/s;

/** The one line that says what went wrong; `server` is the address a client command called. */
export function describeError(e: unknown, server?: string): string {
  if (e instanceof SightlineError) return e.message;
  if (isGrpcError(e)) {
    const name = status[e.code] ?? `status ${e.code}`;
    const unreachable = e.code === status.UNAVAILABLE ? NOT_CONNECTED.exec(e.details) : null;
    if (unreachable) {
      const why = [unreachable[1], unreachable[2]].filter(Boolean).join('; ') || e.details;
      return `${name}: cannot connect to ${server ?? 'the server'} (${why}): is a Sightline server running there? Give its address with --server HOST:PORT`;
    }
    return `${name}: ${e.details}`;
  }
  if (isSystemError(e)) {
    // "ENOENT: no such file or directory, open 'x.jpg'" → "x.jpg: no such file or directory".
    const reason = e.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '');
    return e.path ? `${e.path}: ${reason}` : reason;
  }
  return e instanceof Error ? e.message : String(e);
}

/** 2 for what the user must fix in the command or the configuration, 1 for everything else. */
const exitStatus = (e: unknown): number => (e instanceof SightlineError && e.code === 'INVALID_INPUT' ? 2 : 1);

/** Prints `sightline: <line>` (and the stack when debugging) and sets the exit status. */
export function reportError(e: unknown, server?: string): void {
  const debug = debugRequested();
  // Anything but our own, gRPC's and the system's errors is unexpected: say where the stack is.
  const expected = e instanceof SightlineError || isGrpcError(e) || isSystemError(e);
  console.error(
    `sightline: ${describeError(e, server)}${expected || debug ? '' : ' (--log-level debug prints the stack)'}`,
  );
  if (debug && e instanceof Error && e.stack) console.error(e.stack);
  process.exitCode = exitStatus(e);
}
