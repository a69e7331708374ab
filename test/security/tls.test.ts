/** TLS and mutual TLS with certificates made in the test; certificates reloaded without a restart. */
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import { DetectorClient } from '../../src/generated/sightline/v1/detector.js';
import { makePki, pem } from '../support/certs.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call } from '../support/registry.js';
import { RegistryClient } from '../../src/generated/sightline/v1/registry.js';
import { AuditLog, defaultMigrationsDir, RegistryStore } from '../../src/registry/index.js';
import { startTestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('tls');
const ok = (c: DetectorClient) => detect(c, { image: readFileSync(imagePath('zidane.jpg')) }, { deadlineMs: 5000 });

describe('TLS', { skip: !haveData }, () => {
  test('TLS: a client trusting the CA is served, a plaintext client is not; new certificates are picked up without a restart', async () => {
    const a = makePki('a');
    const b = makePki('b');
    // The server reads its own copies, which the test then replaces as Kubernetes would.
    const cert = `${a.dir}/live.crt`;
    const key = `${a.dir}/live.key`;
    copyFileSync(a.serverCert, cert);
    copyFileSync(a.serverKey, key);
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      tls: { enabled: true, certFile: cert, keyFile: key, reloadCheckMs: 200 },
      pool: { workers: 1, warmupRuns: 0 },
    });
    try {
      const good = detectorClient(srv.address, { caFile: a.caCert });
      assert.equal((await ok(good)).model, 'det');
      good.close();
      const plain = detectorClient(srv.address);
      await assert.rejects(ok(plain), (e: ServiceError) => e.code === status.UNAVAILABLE);
      plain.close();
      const wrongCa = detectorClient(srv.address, { caFile: b.caCert });
      await assert.rejects(ok(wrongCa), (e: ServiceError) => e.code === status.UNAVAILABLE);
      wrongCa.close();
      // --tls-server-name: the certificate names localhost, the CLI dials 127.0.0.1 (as inside a pod, where
      // the chart's certificate names the Services).
      const cli = (...args: string[]) =>
        runCli(['detect', '--image', imagePath('zidane.jpg'), '--server', srv.address, '--ca-file', a.caCert, ...args]);
      assert.equal((await cli('--tls-server-name', 'localhost')).code, 0);
      const other = await cli('--tls-server-name', 'sightline-registry');
      assert.notEqual(other.code, 0, 'a name the certificate does not hold is refused');
      assert.match(other.stderr, /Host: sightline-registry\. is not in the cert's altnames/);

      // Rotate: the files now hold a certificate from CA b.
      copyFileSync(b.serverCert, cert);
      copyFileSync(b.serverKey, key);
      await new Promise((r) => setTimeout(r, 800));
      const rotated = detectorClient(srv.address, { caFile: b.caCert });
      assert.equal((await ok(rotated)).model, 'det', 'new connections get the new certificate');
      rotated.close();
      const stale = detectorClient(srv.address, { caFile: a.caCert });
      await assert.rejects(
        ok(stale),
        (e: ServiceError) => e.code === status.UNAVAILABLE,
        'the old certificate is gone',
      );
      stale.close();
    } finally {
      await srv.close();
      rmSync(a.dir, { recursive: true, force: true });
      rmSync(b.dir, { recursive: true, force: true });
    }
  });

  test('mutual TLS: a client certificate signed by the client CA is required, and its subject is the caller identity', async () => {
    const p = makePki('m', 'camera-7');
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      tls: { enabled: true, certFile: p.serverCert, keyFile: p.serverKey, clientCaFile: p.caCert },
      pool: { workers: 1, warmupRuns: 0 },
    });
    try {
      const withCert = new DetectorClient(
        srv.address,
        credentials.createSsl(pem(p.caCert), pem(p.clientKey), pem(p.clientCert)),
      );
      assert.equal((await ok(withCert)).model, 'det');
      withCert.close();
      const noCert = detectorClient(srv.address, { caFile: p.caCert });
      await assert.rejects(ok(noCert), (e: ServiceError) => e.code === status.UNAVAILABLE);
      noCert.close();
      // The certificate subject is recorded as who changed the registry.
      const r = new RegistryClient(
        srv.address,
        credentials.createSsl(pem(p.caCert), pem(p.clientKey), pem(p.clientCert)),
      );
      await call(r, r.promote, { model: 'det', version: 1, reason: 'mtls identity' });
      r.close();
      const store = RegistryStore.open(srv.dataDir, defaultMigrationsDir());
      const entries = new AuditLog(store.database).list({});
      store.close();
      assert.ok(
        entries.some((e) => e.action === 'promote' && e.principal === 'cert:camera-7'),
        `audit principals: ${entries.map((e) => e.principal).join(', ')}`,
      );
    } finally {
      await srv.close();
      rmSync(p.dir, { recursive: true, force: true });
    }
  });
});
