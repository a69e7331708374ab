/** Starts a real Sightline server in this process on a free loopback port, with a real gRPC client. */
import { loadConfig, deepMerge, type ConfigInput } from '../../src/config/index.js';
import { startSightline, type Sightline } from '../../src/main.js';
import { detectorClient, detect } from '../../src/cli/client.js';
import { createLogger } from '../../src/telemetry/logger.js';
import type { DetectorClient, DetectRequest, DetectResponse } from '../../src/generated/sightline/v1/detector.js';

export interface TestServer {
  app: Sightline;
  address: string;
  client: DetectorClient;
  detect(req: Partial<DetectRequest>, opts?: { deadlineMs?: number }): Promise<DetectResponse>;
  close(): Promise<void>;
}

export async function startTestServer(overrides: ConfigInput = {}): Promise<TestServer> {
  const config = loadConfig({
    env: {},
    overrides: deepMerge({ grpc: { port: 0, host: '127.0.0.1' }, log: { level: process.env.SIGHTLINE_TEST_LOG ?? 'silent' } }, overrides as Record<string, unknown>),
  });
  const app = await startSightline(config, createLogger(config.log.level));
  try {
    await app.ready;
  } catch (e) {
    await app.close(0);
    throw e;
  }
  const address = `127.0.0.1:${app.port}`;
  const client = detectorClient(address);
  return {
    app,
    address,
    client,
    detect: (req, opts) => detect(client, req, opts),
    async close() {
      client.close();
      await app.close(1000);
    },
  };
}
