/**
 * End to end: a Sightline server in this process with the default (machine-sized) configuration, load
 * from a client process (bench/load-client.ts), the server's event-loop delay, and CPU per image by
 * thread and by stage.
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadConfig, type Config } from '../src/config/index.js';
import { startSightline, type Sightline } from '../src/main.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { tempDataDir } from '../test/support/server.js';
import { threadStats } from '../test/support/threads.js';
import { summarize } from './stats.js';
import { cpuByKind, type ThreadKind } from './thread-cpu.js';

const here = dirname(fileURLToPath(import.meta.url));

export type StageTimes = Record<
  'decodeMs' | 'preprocessMs' | 'queueMs' | 'inferenceMs' | 'postprocessMs' | 'totalMs',
  number
>;

export interface LoadResult {
  lat: number[];
  errors: Record<string, number>;
  seconds: number;
  timing: StageTimes;
}

export function runLoad(
  address: string,
  image: string,
  concurrency: number,
  durationMs: number,
  count = 0,
): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(here, 'load-client.js'), address, image, String(concurrency), String(durationMs), String(count)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as LoadResult) : reject(new Error(`load client exited ${code}`)),
    );
  });
}

export interface BenchServer {
  app: Sightline;
  config: Config;
  address: string;
  close(): Promise<void>;
}

export async function startBenchServer(
  modelPath: string,
  labels: string | undefined,
  overrides: Record<string, unknown> = {},
): Promise<BenchServer> {
  const dataDir = tempDataDir();
  const config = loadConfig({
    env: {},
    overrides: {
      grpc: { port: 0 },
      admin: { enabled: false },
      log: { level: 'silent' },
      // A fresh registry per server: the model is version 1 of "bench" and active.
      registry: { dataDir },
      models: [{ name: 'bench', path: modelPath, ...(labels ? { labels } : {}) }],
      ...overrides,
    },
  });
  const app = await startSightline(config, silentLogger);
  await app.ready;
  return {
    app,
    config,
    address: `127.0.0.1:${app.port}`,
    async close() {
      await app.close(1000);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export interface MeasuredLoad {
  concurrency: number;
  /** Every successful call's latency, ms, in completion order. */
  lat: number[];
  throughput: number;
  p50: number;
  p99: number;
  errors: Record<string, number>;
  eldP99: number;
  eldMax: number;
  /** CPU ms per answered image, by thread kind (thread-cpu.ts). */
  cpu: Record<ThreadKind, number>;
  /** The server's median stage times of answered images. */
  timing: StageTimes;
}

/** `concurrency` closed-loop clients for `durationMs`, with CPU accounting and the event-loop delay. */
export async function measureLoad(
  s: BenchServer,
  image: string,
  concurrency: number,
  durationMs: number,
  count = 0,
): Promise<MeasuredLoad> {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = threadStats();
  const r = await runLoad(s.address, image, concurrency, durationMs, count);
  // The pool's threads are told apart by their nice value (default 10, never 0 here).
  const cpu = cpuByKind(cpu0, threadStats(), s.config.pool.workerNice);
  eld.disable();
  const sum = summarize(r.lat);
  const n = r.lat.length;
  return {
    concurrency,
    lat: r.lat,
    throughput: n / r.seconds,
    p50: sum.p50,
    p99: sum.p99,
    errors: r.errors,
    eldP99: eld.percentile(99) / 1e6,
    eldMax: eld.max / 1e6,
    cpu: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, n > 0 ? v / n : Number.NaN])) as Record<
      ThreadKind,
      number
    >,
    timing: r.timing,
  };
}

/**
 * CPU per image by stage. The worker threads do decode, resample, inference and postprocess for one
 * request at a time; their CPU is split by the share of each stage in the worker's own timings.
 * Everything on the main thread (gRPC and protobuf, admission, the hand-off, telemetry, drift) is
 * `event loop`; libvips (non-JPEG decoding), libuv's pool and V8's collector are `other`.
 */
export function stageCpu(l: MeasuredLoad): {
  decode: number;
  resample: number;
  inference: number;
  postprocess: number;
  eventLoop: number;
  other: number;
  total: number;
} {
  const t = l.timing;
  const worker = t.decodeMs + t.preprocessMs + t.inferenceMs + t.postprocessMs;
  const share = (ms: number) => (worker > 0 ? (l.cpu.inference * ms) / worker : 0);
  const out = {
    decode: share(t.decodeMs) + l.cpu.decode,
    resample: share(t.preprocessMs),
    inference: share(t.inferenceMs),
    postprocess: share(t.postprocessMs),
    eventLoop: l.cpu['event loop'],
    other: l.cpu.other,
  };
  return { ...out, total: Object.values(out).reduce((a, b) => a + b, 0) };
}
