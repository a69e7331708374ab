/**
 * A second gRPC server for a real, in-process ModelRegistry: the production Registry handlers
 * (registryHandlers) on their own loopback port, which the test can stop and start again on the same
 * port (a registry restart, as its replicas see it) and whose FetchBlob it can make stall or trickle
 * for chosen files (a registry or network that hangs mid-download). Everything else is the real thing.
 */
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import { RegistryService, type BlobChunk, type FetchBlobRequest } from '../../src/generated/sightline/v1/registry.js';
import type { ModelRegistry } from '../../src/serving/index.js';
import { silentLogger } from '../../src/telemetry/logger.js';
import { registryHandlers } from '../../src/transport/grpc/registry.js';

/** How FetchBlob serves a held file: `sendBytes` at once, then `bytesPerSecond` (0: nothing more, ever). */
export interface Hold {
  sendBytes?: number;
  bytesPerSecond?: number;
}

export interface RegistryFront {
  readonly address: string;
  readonly port: number;
  /** FetchBlob calls for this sha256 from now on are served as `hold` says, until release(). */
  hold(sha256: string, hold?: Hold): void;
  release(sha256: string): void;
  /** FetchBlob calls that found their file held, so far. */
  readonly held: ReadonlyMap<string, number>;
  /** Stops serving: `abrupt` drops every connection (a crash); otherwise the streams are ended first (a shutdown). */
  stop(opts?: { abrupt?: boolean }): Promise<void>;
  /** Serves again on the same port. */
  start(): Promise<void>;
}

const TRICKLE_CHUNK_BYTES = 16 * 1024;

export async function registryFront(registry: ModelRegistry): Promise<RegistryFront> {
  const holds = new Map<string, Required<Hold>>();
  const held = new Map<string, number>();
  let port = 0;
  let server: Server | null = null;
  let handlers: ReturnType<typeof registryHandlers> | null = null;

  /** Serves a held file: its first bytes, then a trickle or nothing, until the client gives up. */
  async function serveHeld(call: ServerWritableStream<FetchBlobRequest, BlobChunk>, h: Required<Hold>) {
    const sha = call.request.sha256;
    held.set(sha, (held.get(sha) ?? 0) + 1);
    const bytes = await registry.readBlob(sha);
    let sent = Math.min(h.sendBytes, bytes.length);
    if (sent > 0) call.write({ data: bytes.subarray(0, sent) });
    if (h.bytesPerSecond === 0) return; // never another byte, never an end
    const every = Math.max(1, Math.round((TRICKLE_CHUNK_BYTES / h.bytesPerSecond) * 1000));
    while (!call.cancelled && sent < bytes.length) {
      await new Promise((r) => setTimeout(r, every));
      if (call.cancelled) return;
      call.write({ data: bytes.subarray(sent, sent + TRICKLE_CHUNK_BYTES) });
      sent += TRICKLE_CHUNK_BYTES;
    }
    if (!call.cancelled) call.end();
  }

  async function start(): Promise<void> {
    handlers = registryHandlers(registry, silentLogger, () => []);
    const real = handlers.impl;
    const s = new Server();
    s.addService(RegistryService, {
      ...real,
      fetchBlob(call: ServerWritableStream<FetchBlobRequest, BlobChunk>) {
        const h = holds.get(call.request.sha256);
        if (!h) return real.fetchBlob(call);
        serveHeld(call, h).catch(() => undefined);
      },
    });
    port = await new Promise<number>((resolve, reject) =>
      s.bindAsync(`127.0.0.1:${port}`, ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    server = s;
  }

  await start();
  return {
    get address() {
      return `127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    hold: (sha256, h = {}) => holds.set(sha256, { sendBytes: h.sendBytes ?? 0, bytesPerSecond: h.bytesPerSecond ?? 0 }),
    release: (sha256) => holds.delete(sha256),
    held,
    async stop(opts = {}) {
      const s = server;
      if (!s) return;
      server = null;
      if (opts.abrupt) return s.forceShutdown();
      // As the real server shuts down: the watches and report streams end, then the calls drain.
      handlers?.endWatches();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => (s.forceShutdown(), resolve()), 2_000);
        s.tryShutdown(() => (clearTimeout(force), resolve()));
      });
    },
    start,
  };
}
