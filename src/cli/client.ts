/** gRPC clients for the CLI's client commands, and promise wrappers around them. */
import { credentials, Metadata, type CallOptions, type ServiceError } from '@grpc/grpc-js';
import { DetectorClient, type DetectRequest, type DetectResponse } from '../generated/sightline/v1/detector.js';
import { RegistryClient } from '../generated/sightline/v1/registry.js';

export const DEFAULT_SERVER = '127.0.0.1:50051';

export function detectorClient(server: string): DetectorClient {
  return new DetectorClient(server, credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 * 1024 * 1024,
    'grpc.max_receive_message_length': 64 * 1024 * 1024,
  });
}

export function detect(client: DetectorClient, req: Partial<DetectRequest>, opts: { deadlineMs?: number; metadata?: Metadata } = {}): Promise<DetectResponse> {
  const full: DetectRequest = {
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
  const deadline = opts.deadlineMs ? new Date(Date.now() + opts.deadlineMs) : undefined;
  return new Promise((resolve, reject) => {
    const cb = (err: ServiceError | null, res?: DetectResponse) => (err ? reject(err) : resolve(res!));
    if (opts.metadata) client.detect(full, opts.metadata, { deadline }, cb);
    else client.detect(full, { deadline } as never, cb);
  });
}

export function registryClient(server: string): RegistryClient {
  return new RegistryClient(server, credentials.createInsecure(), { 'grpc.max_send_message_length': 8 * 1024 * 1024 });
}

type UnaryMethod<Req, Res> = (req: Req, md: Metadata, opts: Partial<CallOptions>, cb: (err: ServiceError | null, res?: Res) => void) => unknown;

/** Calls a unary method of a generated client as a promise, with an optional deadline. */
export function call<Req, Res>(client: object, method: UnaryMethod<Req, Res>, req: Req, opts: { deadlineMs?: number; metadata?: Metadata } = {}): Promise<Res> {
  return new Promise((resolve, reject) =>
    method.call(client, req, opts.metadata ?? new Metadata(), opts.deadlineMs ? { deadline: new Date(Date.now() + opts.deadlineMs) } : {}, (err, res) => (err ? reject(err) : resolve(res!))),
  );
}
