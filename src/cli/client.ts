/** gRPC clients for the CLI's client commands, and promise wrappers around them. */
import { credentials, InterceptingCall, Metadata, type CallOptions, type ChannelCredentials, type ClientOptions, type Interceptor, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { DetectorClient, type DetectRequest, type DetectResponse } from '../generated/sightline/v1/detector.js';
import { MonitoringClient } from '../generated/sightline/v1/monitoring.js';
import { RegistryClient } from '../generated/sightline/v1/registry.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

/** How a client command authenticates: a bearer token, and the CA of the server's TLS certificate. */
export interface ClientAuth {
  token?: string;
  caFile?: string;
}

/** Channel credentials (TLS when a CA file is given) and an interceptor that adds the bearer token. */
export function channel(auth: ClientAuth = {}): { creds: ChannelCredentials; options: ClientOptions } {
  const creds = auth.caFile ? credentials.createSsl(readFileSync(auth.caFile)) : credentials.createInsecure();
  const token = auth.token;
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
  return { creds, options: { interceptors } };
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

export function detect(client: DetectorClient, req: Partial<DetectRequest>, opts: { deadlineMs?: number; metadata?: Metadata } = {}): Promise<DetectResponse> {
  const full = detectRequest(req);
  const deadline = opts.deadlineMs ? new Date(Date.now() + opts.deadlineMs) : undefined;
  return new Promise((resolve, reject) => {
    const cb = (err: ServiceError | null, res?: DetectResponse) => (err ? reject(err) : resolve(res!));
    if (opts.metadata) client.detect(full, opts.metadata, { deadline }, cb);
    else client.detect(full, { deadline } as never, cb);
  });
}

export function monitoringClient(server: string, auth: ClientAuth = {}): MonitoringClient {
  const { creds, options } = channel(auth);
  return new MonitoringClient(server, creds, { ...options, 'grpc.max_send_message_length': 64 * 1024 * 1024, 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
}

export function registryClient(server: string, auth: ClientAuth = {}): RegistryClient {
  const { creds, options } = channel(auth);
  return new RegistryClient(server, creds, { ...options, 'grpc.max_send_message_length': 8 * 1024 * 1024 });
}

type UnaryMethod<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res?: Res) => void) => unknown;

/** Calls a unary method of a generated client as a promise, with an optional deadline. */
export function call<Req, Res>(client: object, method: UnaryMethod<Req, Res>, req: Req, opts: { deadlineMs?: number; metadata?: Metadata } = {}): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, req, opts.metadata ?? new Metadata(), opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {}, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}
