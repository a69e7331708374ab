/** Starts a real Sightline server in this process on a free loopback port, with a real gRPC client. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, deepMerge, type ConfigInput } from '../../src/config/index.js';
import { startSightline, type Sightline, type StartOptions } from '../../src/main.js';
import { detectorClient, detect } from '../../src/cli/client.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { modelPath } from './shared.js';
import type { DetectorClient, DetectRequest, DetectResponse } from '../../src/generated/sightline/v1/detector.js';

export interface TestServer {
  app: Sightline;
  address: string;
  /** The registry's data directory (a fresh temporary one unless the overrides name one). */
  dataDir: string;
  client: DetectorClient;
  detect(req: Partial<DetectRequest>, opts?: { deadlineMs?: number }): Promise<DetectResponse>;
  close(): Promise<void>;
}

/** A fresh registry data directory, removed by the caller. */
export const tempDataDir = (): string => mkdtempSync(join(tmpdir(), 'sightline-test-'));

export async function startTestServer(overrides: ConfigInput = {}, start: StartOptions = {}): Promise<TestServer> {
  const ownDir = !overrides.registry?.dataDir;
  const dataDir = overrides.registry?.dataDir ?? tempDataDir();
  const config = loadConfig({
    env: {},
    overrides: deepMerge(
      {
        grpc: { port: 0, host: '127.0.0.1' },
        admin: { port: 0, host: '127.0.0.1' }, // tests run in parallel: never the fixed 9464
        log: { level: process.env.SIGHTLINE_TEST_LOG ?? 'silent' },
        // An inference replica's blob cache too: never the default ./cache in the checkout.
        registry: { dataDir, cacheDir: join(dataDir, 'cache') },
      },
      overrides as Record<string, unknown>,
    ),
  });
  const app = await startSightline(config, createLogger(config.log.level), start);
  try {
    await app.ready;
  } catch (e) {
    await app.close(0);
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  const address = `127.0.0.1:${app.port}`;
  const client = detectorClient(address);
  return {
    app,
    address,
    dataDir,
    client,
    detect: (req, opts) => detect(client, req, opts),
    async close() {
      client.close();
      await app.close(1000);
      if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** One worker, no warm-up: enough for tests that only follow versions. */
const SMALL_POOL = { workers: 1, warmupRuns: 0 };

/** A server in role registry whose model det has version 1 (yolo11n_int8_320) active. */
export const startDetRegistry = (overrides: ConfigInput = {}): Promise<TestServer> =>
  startTestServer(
    deepMerge(
      { role: 'registry', models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }], pool: SMALL_POOL },
      overrides as Record<string, unknown>,
    ),
  );

/** An inference replica following the registry at `address`, named `name` in its fleet view and reporting every 200 ms. */
export const startReplica = (name: string, address: string, overrides: ConfigInput = {}): Promise<TestServer> =>
  startTestServer(
    deepMerge(
      {
        role: 'inference',
        registry: { address },
        fleet: { replicaName: name, reportIntervalMs: 200 },
        pool: SMALL_POOL,
      },
      overrides as Record<string, unknown>,
    ),
  );
