/** grpc.health.v1: NOT_SERVING until a model is ready and during shutdown; Watch sees it; reflection lists the services. */
import { credentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import {
  HealthClient,
  HealthCheckResponse_ServingStatus as S,
  type HealthCheckResponse,
} from '../../src/generated/health/v1/health.js';
import { sharedDataOrSkip } from '../support/data.js';
import { waitFor } from '../support/wait.js';
import { startTestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('health');

const check = (c: HealthClient, service: string) =>
  new Promise<S>((resolve, reject) =>
    c.check({ service }, (e: ServiceError | null, r?: HealthCheckResponse) => (e ? reject(e) : resolve(r!.status))),
  );

describe('gRPC health and reflection', { skip: !haveData }, () => {
  test('NOT_SERVING before a model is ready, SERVING once it is, NOT_SERVING at shutdown; Watch sees each transition', async () => {
    const srv = await startTestServer({ pool: { workers: 1, warmupRuns: 0 } });
    const health = new HealthClient(srv.address, credentials.createInsecure());
    const seen: S[] = [];
    const watch = health.watch({ service: '' });
    watch.on('data', (r: HealthCheckResponse) => seen.push(r.status));
    watch.on('error', () => undefined);
    try {
      await waitFor(() => seen.length > 0, 2000, 'the first Watch message');
      assert.equal(seen[0], S.NOT_SERVING);
      assert.equal(await check(health, ''), S.NOT_SERVING);
      assert.equal(await check(health, 'sightline.v1.Detector'), S.NOT_SERVING);
      assert.equal(await check(health, 'liveness'), S.SERVING, 'liveness answers SERVING while the process runs');

      await srv.app.registry!.registerFile('det', modelPath('yolo11n_int8_320.onnx'), {});
      await waitFor(() => seen.includes(S.SERVING), 5000, 'SERVING on Watch');
      assert.equal(await check(health, ''), S.SERVING);
      assert.equal(await check(health, 'sightline.v1.Detector'), S.SERVING);
      assert.equal(await check(health, 'sightline.v1.Registry'), S.SERVING);

      const closing = srv.close();
      await waitFor(() => seen.at(-1) === S.NOT_SERVING, 5000, 'NOT_SERVING on Watch at shutdown');
      await closing;
      assert.deepEqual(
        seen.filter((s, i) => i === 0 || s !== seen[i - 1]),
        [S.NOT_SERVING, S.SERVING, S.NOT_SERVING],
      );
    } finally {
      watch.cancel();
      health.close();
      await srv.close();
    }
  });

  test('server reflection lists every service (grpcurl works without proto files)', async () => {
    const srv = await startTestServer({ pool: { workers: 1, warmupRuns: 0 } });
    try {
      const require = createRequire(import.meta.url);
      const protoDir = join(dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto');
      const pkg = loadPackageDefinition(
        protoLoader.loadSync('grpc/reflection/v1/reflection.proto', { includeDirs: [protoDir] }),
      ) as unknown as {
        grpc: {
          reflection: {
            v1: {
              ServerReflection: new (
                addr: string,
                c: ReturnType<typeof credentials.createInsecure>,
              ) => { serverReflectionInfo(): NodeJS.ReadWriteStream & { end(): void; cancel(): void } };
            };
          };
        };
      };
      const client = new pkg.grpc.reflection.v1.ServerReflection(srv.address, credentials.createInsecure());
      const call = client.serverReflectionInfo();
      const names = await new Promise<string[]>((resolve, reject) => {
        call.on('data', (r: { listServicesResponse?: { service: { name: string }[] } }) =>
          resolve(r.listServicesResponse?.service.map((s) => s.name) ?? []),
        );
        call.on('error', reject);
        call.write({ listServices: '' } as never);
      });
      call.end();
      for (const s of [
        'sightline.v1.Detector',
        'sightline.v1.Registry',
        'sightline.v1.Monitoring',
        'grpc.health.v1.Health',
      ])
        assert.ok(names.includes(s), `reflection lists ${s}: ${names.join(', ')}`);
    } finally {
      await srv.close();
    }
  });
});
