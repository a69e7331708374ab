/**
 * A TCP relay on loopback between a client and a server, which the test can pause: while paused,
 * bytes in both directions wait in the relay (nothing is lost, no connection breaks), as on a network
 * link that hangs for a while. Real sockets; the two ends speak real gRPC through it.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export interface TcpProxy {
  /** Where clients connect instead of `target`. */
  readonly address: string;
  pause(): void;
  /** Delivers everything held back, then relays as before. */
  resume(): void;
  close(): Promise<void>;
}

export async function tcpProxy(target: string): Promise<TcpProxy> {
  const i = target.lastIndexOf(':');
  const [host, port] = [target.slice(0, i), Number(target.slice(i + 1))];
  let paused = false;
  const held: [Socket, Buffer][] = [];
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (d: Buffer) => (paused ? held.push([to, d]) : to.write(d)));
    from.on('close', () => to.destroy());
    from.on('error', () => to.destroy());
  };
  const server: Server = createServer((client) => {
    const upstream = connect(port, host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${own}`,
    pause: () => void (paused = true),
    resume() {
      paused = false;
      for (const [to, d] of held.splice(0)) if (!to.destroyed) to.write(d);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
