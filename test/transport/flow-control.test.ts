/**
 * The server's HTTP/2 receive window (grpc.flowControlWindowBytes): read from the wire by a plain
 * http2 client, so a grpc-js upgrade that stops the window from being applied fails here.
 */
import assert from 'node:assert/strict';
import { connect, type ClientHttp2Session } from 'node:http2';
import { test } from 'node:test';
import { startTestServer } from '../support/server.js';

/** The window the server advertises for new streams, and the connection window it has opened. */
async function advertisedWindows(address: string): Promise<{ stream: number; connection: number }> {
  const session: ClientHttp2Session = connect(`http://${address}`);
  try {
    const settings = await new Promise<{ initialWindowSize?: number }>((resolve, reject) => {
      session.once('remoteSettings', resolve);
      session.once('error', reject);
    });
    // The connection window comes as a WINDOW_UPDATE the server sends when the session opens; a
    // PING's answer comes after it on the same ordered connection.
    await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
    return { stream: settings.initialWindowSize ?? 65_535, connection: session.state.remoteWindowSize ?? 0 };
  } finally {
    session.destroy();
  }
}

test('the server advertises the configured receive window per stream and per connection', async () => {
  const server = await startTestServer({ grpc: { flowControlWindowBytes: 8 << 20 } });
  try {
    assert.deepEqual(await advertisedWindows(server.address), { stream: 8 << 20, connection: 8 << 20 });
  } finally {
    await server.close();
  }
});

test('4 MiB by default; 65535 keeps the HTTP/2 default window', async () => {
  const dflt = await startTestServer();
  try {
    assert.deepEqual(await advertisedWindows(dflt.address), { stream: 4 << 20, connection: 4 << 20 });
  } finally {
    await dflt.close();
  }
  const plain = await startTestServer({ grpc: { flowControlWindowBytes: 65_535 } });
  try {
    assert.deepEqual(await advertisedWindows(plain.address), { stream: 65_535, connection: 65_535 });
  } finally {
    await plain.close();
  }
});
