/** Configuration: defaults ← file (YAML or JSON) ← environment ← flags, validated once, frozen. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { envToTree, loadConfig } from '../../src/config/index.js';

test('defaults are complete and the result is frozen', () => {
  const c = loadConfig({ env: {}, cpus: { cpus: 2, affinity: 2, quota: null, source: 'affinity' } });
  assert.equal(c.grpc.port, 50051);
  assert.equal(c.limits.maxImageBytes, 16 * 1024 * 1024);
  assert.deepEqual([c.pool.workers, c.pool.maxQueue], [2, 6]);
  assert.equal(c.role, 'all');
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.pool));
});

test('file < environment < overrides, for YAML and JSON files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sightline-config-'));
  try {
    writeFileSync(join(dir, 'c.yaml'), 'grpc:\n  port: 6000\n  host: 0.0.0.0\npool:\n  workers: 3\n');
    writeFileSync(join(dir, 'c.json'), JSON.stringify({ pool: { workers: 4 } }));
    const y = loadConfig({
      file: join(dir, 'c.yaml'),
      env: { SIGHTLINE_GRPC__PORT: '7000' },
      overrides: { pool: { workers: 1 } },
    });
    assert.deepEqual([y.grpc.port, y.grpc.host, y.pool.workers], [7000, '0.0.0.0', 1]);
    assert.equal(loadConfig({ file: join(dir, 'c.json'), env: {} }).pool.workers, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('environment names map to nested camelCase keys, values parsed as JSON when they can be', () => {
  assert.deepEqual(
    envToTree({
      SIGHTLINE_POOL__MAX_QUEUE: '16',
      SIGHTLINE_REGISTRY__DATA_DIR: '/data',
      SIGHTLINE_AUTH__ENABLED: 'true',
      OTHER: 'x',
    }),
    {
      pool: { maxQueue: 16 },
      registry: { dataDir: '/data' },
      auth: { enabled: true },
    },
  );
  // Variables that are not configuration are left alone.
  assert.deepEqual(
    envToTree({
      SIGHTLINE_TOKEN: 't',
      SIGHTLINE_CONFIG: 'f',
      SIGHTLINE_SHARED_DIR: 'd',
      SIGHTLINE_FUZZ_SEED: '1',
      SIGHTLINE_TEST_LOG: 'info',
    }),
    {},
  );
});

test('every problem is reported with its path, and a typo is refused rather than ignored', () => {
  assert.throws(
    () =>
      loadConfig({ env: { SIGHTLINE_POOL__WORKERS: '0', SIGHTLINE_GRPC__PORT: '"x"', SIGHTLINE_POOL__WORKRS: '2' } }),
    (e: Error) => /pool\.workers/.test(e.message) && /grpc\.port/.test(e.message) && /workrs/.test(e.message),
  );
});
