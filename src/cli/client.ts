/** gRPC clients for the CLI's client commands, and promise wrappers around them. */
import {
  credentials,
  InterceptingCall,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type ClientOptions,
  type Interceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import type { Command } from 'commander';
import { DetectorClient, type DetectRequest, type DetectResponse } from '../generated/sightline/v1/detector.js';
import { MonitoringClient } from '../generated/sightline/v1/monitoring.js';
import { RegistryClient } from '../generated/sightline/v1/registry.js';
import { SightlineError } from '../errors.js';
import { readFileArg } from './args.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

/** How a client command authenticates: a bearer token (or a file holding one), and the CA of the server's TLS certificate. */
export interface ClientAuth {
  token?: string;
  /** Wins over `token` (which defaults to $SIGHTLINE_TOKEN). */
  tokenFile?: string;
  caFile?: string;
  /** The name the server's certificate must hold when it differs from the address (127.0.0.1 inside a pod). */
  tlsServerName?: string;
}

/** The flags of every client command, as ConnectionFlags. */
export interface ConnectionFlags extends ClientAuth {
  server: string;
}

/** Adds the flags every client command takes: where the server is and how to authenticate. */
export function connectionOptions(c: Command): Command {
  return authOptions(c.option('--server <addr>', 'server address', DEFAULT_SERVER));
}

/** How to authenticate to the server and check its certificate: --token, --token-file, --ca-file, --tls-server-name. */
export function authOptions(c: Command): Command {
  return c
    .option('--token <token>', 'bearer token (default: $SIGHTLINE_TOKEN)', process.env.SIGHTLINE_TOKEN)
    .option(
      '--token-file <path>',
      "read the bearer token from a file, e.g. a mounted Secret (/etc/sightline/auth/admin-token in the Helm chart's pods)",
    )
    .option('--ca-file <pem>', 'CA certificate of the server (TLS)')
    .option(
      '--tls-server-name <name>',
      "the name in the server's certificate, when --server is another address (127.0.0.1 inside a pod)",
    );
}

/** The token in --token-file: a missing, unreadable or empty file is the user's to fix (exit 2). */
function readTokenFile(path: string): string {
  const token = readFileArg('--token-file', path).toString('utf8').trim();
  if (!token) throw new SightlineError('INVALID_INPUT', `--token-file ${path}: the file is empty`, { path });
  return token;
}

/** Channel credentials (TLS when a CA file is given) and an interceptor that adds the bearer token. */
export function channel(auth: ClientAuth = {}): { creds: ChannelCredentials; options: ClientOptions } {
  const creds = auth.caFile
    ? credentials.createSsl(readFileArg('--ca-file', auth.caFile))
    : credentials.createInsecure();
  const token = auth.tokenFile ? readTokenFile(auth.tokenFile) : auth.token;
  const interceptors: Interceptor[] = token
    ? [
        (options, nextCall) =>
          new InterceptingCall(nextCall(options), {
            start(md, listener, next) {
              md.set('authorization', `Bearer ${token}`);
              next(md, listener);
            },
          }),
      ]
    : [];
  // Checked against the certificate and sent as :authority in place of the address's host.
  const name = auth.tlsServerName
    ? { 'grpc.ssl_target_name_override': auth.tlsServerName, 'grpc.default_authority': auth.tlsServerName }
    : {};
  return { creds, options: { interceptors, ...name } };
}

export function detectorClient(server: string, auth: ClientAuth = {}): DetectorClient {
  const { creds, options } = channel(auth);
  return new DetectorClient(server, creds, {
    ...options,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
}

/** A DetectRequest with every field at its default (0 / empty = the server's default) unless given. */
export function detectRequest(req: Partial<DetectRequest>): DetectRequest {
  return {
    model: '',
    version: '',
    image: Buffer.alloc(0),
    confidenceThreshold: 0,
    iouThreshold: 0,
    maxDetections: 0,
    classes: [],
    agnosticNms: false,
    frameId: 0n,
    ...req,
  };
}

/** `signal`: aborting it cancels the call (it then fails with CANCELLED). */
export function detect(
  client: DetectorClient,
  req: Partial<DetectRequest>,
  opts: { deadlineMs?: number; metadata?: Metadata; signal?: AbortSignal } = {},
): Promise<DetectResponse> {
  const full = detectRequest(req);
  const deadline = opts.deadlineMs ? new Date(Date.now() + opts.deadlineMs) : undefined;
  return new Promise((resolve, reject) => {
    const cancel = () => pending.cancel();
    const cb = (err: ServiceError | null, res?: DetectResponse) => {
      opts.signal?.removeEventListener('abort', cancel);
      if (err) reject(err);
      else resolve(res!);
    };
    const pending = opts.metadata
      ? client.detect(full, opts.metadata, { deadline }, cb)
      : client.detect(full, { deadline } as never, cb);
    if (opts.signal?.aborted) pending.cancel();
    else opts.signal?.addEventListener('abort', cancel, { once: true });
  });
}

export function monitoringClient(server: string, auth: ClientAuth = {}): MonitoringClient {
  const { creds, options } = channel(auth);
  return new MonitoringClient(server, creds, {
    ...options,
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
}

export function registryClient(server: string, auth: ClientAuth = {}): RegistryClient {
  const { creds, options } = channel(auth);
  return new RegistryClient(server, creds, { ...options, 'grpc.max_send_message_length': 8 * 1024 * 1024 });
}

type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, res?: Res) => void,
) => unknown;

/** Calls a unary method of a generated client as a promise, with an optional deadline. */
export function call<Req, Res>(
  client: object,
  method: UnaryMethod<Req, Res>,
  req: Req,
  opts: { deadlineMs?: number; metadata?: Metadata } = {},
): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(
      client,
      req,
      opts.metadata ?? new Metadata(),
      opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {},
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
}
