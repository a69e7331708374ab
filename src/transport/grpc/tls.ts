/** Server credentials: plaintext, or TLS (optionally mutual) from PEM files that are re-read when they change. */
import { experimental, ServerCredentials } from '@grpc/grpc-js';
import { existsSync } from 'node:fs';
import { SightlineError } from '../../errors.js';
import type { Logger } from '../../telemetry/logger.js';

export interface TlsOptions {
  enabled: boolean;
  certFile?: string;
  keyFile?: string;
  clientCaFile?: string;
  reloadCheckMs: number;
}

const LOOPBACK = /^(127\.|localhost$|::1$|\[::1\]$)/;

export function serverCredentials(tls: TlsOptions, host: string, log: Logger): ServerCredentials {
  if (!tls.enabled) {
    if (!LOOPBACK.test(host))
      log.warn(
        { event: 'plaintext_grpc', host },
        `gRPC is plaintext on ${host}: anyone on the network can read images and tokens; enable tls in production`,
      );
    return ServerCredentials.createInsecure();
  }
  for (const [what, file] of [
    ['tls.certFile', tls.certFile],
    ['tls.keyFile', tls.keyFile],
  ] as const) {
    if (!file) throw new SightlineError('INVALID_INPUT', `tls.enabled needs ${what}`);
    if (!existsSync(file)) throw new SightlineError('INVALID_INPUT', `${what} ${file} does not exist`);
  }
  // grpc-js's file watcher re-reads the files every reloadCheckMs and swaps the secure context, so a
  // rotated Kubernetes Secret takes effect without a restart; connections already open keep theirs.
  const identity = new experimental.FileWatcherCertificateProvider({
    certificateFile: tls.certFile,
    privateKeyFile: tls.keyFile,
    refreshIntervalMs: tls.reloadCheckMs,
  });
  const ca = tls.clientCaFile
    ? new experimental.FileWatcherCertificateProvider({
        caCertificateFile: tls.clientCaFile,
        refreshIntervalMs: tls.reloadCheckMs,
      })
    : null;
  log.info({ event: 'tls_enabled', mutual: !!ca }, ca ? 'gRPC with mutual TLS' : 'gRPC with TLS');
  // grpc-js names the parameters the other way round; the implementation takes (identity, ca).
  return experimental.createCertificateProviderServerCredentials(identity, ca, !!ca);
}
