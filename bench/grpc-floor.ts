/**
 * The floor under any gRPC server in Node on this machine: a bare grpc-js unary method with identity
 * serializers (no protobuf, no interceptors, no work), the request carrying the image's bytes and the
 * answer 120 bytes, server here and client in its own process, as in the end-to-end runs. With
 * Node's 64 KiB HTTP/2 window and with the window Sightline configures.
 */
import {
  credentials,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyReceiveWindow } from '../src/transport/grpc/flow-control.js';
import { silentLogger } from '../src/telemetry/logger.js';

const here = dirname(fileURLToPath(import.meta.url));
const identity = (b: Buffer): Buffer => b;
export const ECHO = {
  echo: {
    path: '/bench.Floor/Echo',
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  },
} as const;

/** A client of the echo method on a loopback port: one call per echo(), resolved once it is answered. */
export function floorClient(port: number): { echo: (payload: Buffer) => Promise<void>; close: () => void } {
  const Client = makeGenericClientConstructor(ECHO, 'Floor');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), {
    'grpc.max_send_message_length': 64 << 20,
  });
  const unary = client as unknown as { echo: (b: Buffer, cb: (e: ServiceError | null) => void) => void };
  return {
    echo: (payload) => new Promise<void>((resolve, reject) => unary.echo(payload, (e) => (e ? reject(e) : resolve()))),
    close: () => client.close(),
  };
}

/** A bare echo server on a loopback port, answering 120 bytes, with the given receive window. */
export async function startFloorServer(window: number): Promise<{ port: number; close: () => void }> {
  const server = new Server({ 'grpc.max_receive_message_length': 64 << 20 });
  const answer = Buffer.alloc(120, 1);
  server.addService(ECHO, {
    echo: (_call: ServerUnaryCall<Buffer, Buffer>, cb: sendUnaryData<Buffer>) => cb(null, answer),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  applyReceiveWindow(server, window, silentLogger);
  return { port, close: () => server.forceShutdown() };
}

/** Median round trip (ms) of `calls` unary calls back to back carrying `bytes` bytes, for each receive window. */
export async function grpcFloor(
  bytes: number,
  windows: readonly number[],
  calls: number,
): Promise<{ window: number; p50: number }[]> {
  const out: { window: number; p50: number }[] = [];
  for (const window of windows) {
    const server = await startFloorServer(window);
    const p50 = await new Promise<number>((resolve, reject) => {
      const child = fork(join(here, 'grpc-floor-client.js'), [String(server.port), String(bytes), String(calls)], {
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      child.once('message', (m: { p50: number }) => resolve(m.p50));
      child.once('error', reject);
    });
    server.close();
    out.push({ window, p50 });
  }
  return out;
}
