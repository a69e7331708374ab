/**
 * The server's HTTP/2 receive window. Node advertises 64 KiB per stream and per connection, so a client
 * sending a 500 KB image stops every 64 KiB until a WINDOW_UPDATE comes back: eight round trips for
 * one photo, each needing both event loops to turn (measured on loopback: 3.5 ms → 1.9 ms for 487 KB
 * with a larger window; across hosts every round trip costs a network RTT as well).
 *
 * grpc-js 1.14 applies 'grpc-node.flow_control_window' to client connections only; server support is
 * grpc/grpc-node PR #3058, still open. Until it lands, the window is raised on the http2 servers grpc-js
 * created, found through its internal `http2Servers` map. If a grpc-js upgrade removes that map, the
 * server keeps working with Node's default window and says so in the log (and the flow-control test
 * fails, so the upgrade is noticed).
 */
import type { Server } from '@grpc/grpc-js';
import type { Http2Server, Http2Session } from 'node:http2';
import type { Logger } from '../../telemetry/logger.js';

/** Node's (and the HTTP/2 RFC's) initial window: what the server advertises without this. */
export const DEFAULT_HTTP2_WINDOW = 65_535;

/**
 * Advertises `bytes` as the initial window of every stream and of every connection accepted from now
 * on. Returns false when grpc-js's http2 servers could not be reached (nothing is changed then).
 */
export function applyReceiveWindow(server: Server, bytes: number, log: Logger): boolean {
  if (bytes <= DEFAULT_HTTP2_WINDOW) return true;
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) {
    log.warn(
      { event: 'flow_control_window_not_applied', bytes },
      'grpc.flowControlWindowBytes not applied: this grpc-js version does not expose its http2 servers; using the 64 KiB default',
    );
    return false;
  }
  for (const h2 of servers.keys() as IterableIterator<Http2Server>) {
    // Per stream: sent in the SETTINGS frame that opens each new connection.
    h2.updateSettings({ initialWindowSize: bytes });
    // Per connection: the connection window is not a setting; it is raised with a WINDOW_UPDATE.
    h2.on('session', (session: Http2Session) => {
      try {
        session.setLocalWindowSize(bytes);
      } catch (e) {
        log.warn(
          { event: 'flow_control_window_not_applied', bytes, err: (e as Error).message },
          'could not raise the connection window',
        );
      }
    });
  }
  return true;
}
