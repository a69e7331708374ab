/**
 * Streaming and overload scenarios of `npm run bench`, on one server with the default pool config
 * (in this process, load from separate client processes as the end-to-end section does):
 * 1. saturation: closed loop at concurrency 8 (bench/load-client.ts): throughput and p99;
 * 2. overload: open-loop arrivals at 3× that throughput (bench/overload-client.ts): goodput, p99 of
 *    accepted calls, share refused with RESOURCE_EXHAUSTED. Saturation and overload alternate in
 *    `rounds` short runs, so that slow drift in the load of a shared machine hits both alike;
 * 3. what one refused call costs the server (bench/refuse-client.ts);
 * 4. live video: one stream at 30 frames/s with the `latest` drop policy (bench/stream-client.ts):
 *    delivered frames/s, drop rate, frame age at delivery, against the inference time.
 * Returns markdown lines for a section and rows for the targets table.
 */
import { spawn } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/index.js';
import { tempDataDir } from '../test/support/server.js';
import { startSightline } from '../src/main.js';
import { silentLogger } from '../src/telemetry/logger.js';
import type { OverloadReport } from './overload-client.js';
import type { StreamReport } from './stream-client.js';
import { summarize } from './stats.js';

const here = dirname(fileURLToPath(import.meta.url));

export interface ScenarioOptions {
  modelPath: string;
  labels?: string;
  imagePath: string;
  /** Length of each saturation run and each overload run; there are `rounds` of each. */
  phaseMs: number;
  rounds: number;
  /** Length of the stream held to the target, and of each other stream measured for comparison. */
  streamMs: number;
  compareStreamMs: number;
  /** Overload arrival rate as a multiple of the saturation throughput. */
  overloadFactor?: number;
  fps?: number;
  /** Stream max_in_flight held to the target, and others measured for comparison. */
  streamInFlight?: number;
  compareInFlight?: number[];
}

export interface ScenarioResult {
  lines: string[];
  /** Rows of `| target | measured | ratio | met |`. */
  targets: string[];
}

function runJson<T>(script: string, args: (string | number)[]): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, script), ...args.map(String)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) =>
      code === 0 ? resolve(JSON.parse(out) as T) : reject(new Error(`${script} exited ${code}`)),
    );
  });
}

interface Watch {
  eldP99: number;
  eldMax: number;
  cpuMs: number;
  seconds: number;
}

/** Runs `fn` while watching this process (the server): event-loop delay and CPU time. */
async function watched<T>(fn: () => Promise<T>): Promise<{ r: T } & Watch> {
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  eld.disable();
  return { r, eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6, cpuMs: (cpu.user + cpu.system) / 1000, seconds };
}

/** Several watched runs as one: worst event-loop delay, total CPU and time. */
function pooled(ws: Watch[]): Watch & { cores: number } {
  const cpuMs = ws.reduce((a, w) => a + w.cpuMs, 0);
  const seconds = ws.reduce((a, w) => a + w.seconds, 0);
  return {
    eldP99: Math.max(...ws.map((w) => w.eldP99)),
    eldMax: Math.max(...ws.map((w) => w.eldMax)),
    cpuMs,
    seconds,
    cores: cpuMs / 1000 / seconds,
  };
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const pct = (n: number) => `${(n * 100).toFixed(1)} %`;
const add = (into: Record<string, number>, from: Record<string, number>) => {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

export async function streamingAndOverload(o: ScenarioOptions): Promise<ScenarioResult> {
  const factor = o.overloadFactor ?? 3;
  const fps = o.fps ?? 30;
  const mif = o.streamInFlight ?? 2;
  const compare = o.compareInFlight ?? [1];
  const config = loadConfig({
    env: {},
    overrides: {
      grpc: { port: 0 },
      admin: { port: 0 },
      log: { level: 'silent' },
      registry: { dataDir: tempDataDir() },
      models: [{ name: 'bench', path: o.modelPath, ...(o.labels ? { labels: o.labels } : {}) }],
    },
  });
  const app = await startSightline(config, silentLogger);
  const lines: string[] = [];
  const targets: string[] = [];
  const load0 = os.loadavg()[0]!;
  try {
    await app.ready;
    const address = `127.0.0.1:${app.port}`;
    const pool = config.pool;
    const warmupMs = Math.min(1000, o.phaseMs / 4);

    // 1 + 2. Saturation (closed loop, c=8) and overload (open loop at factor × its throughput), alternating.
    const satLat: number[] = [];
    const satErrors: Record<string, number> = {};
    let satSeconds = 0;
    const satRuns: number[] = [];
    const satWatch: Watch[] = [];
    const ovRuns: OverloadReport[] = [];
    const ovWatch: Watch[] = [];
    let rate = 0;
    const rejectedBefore = app.pool.stats().runsRejected;
    for (let round = 0; round < o.rounds; round++) {
      const sat = await watched(() =>
        runJson<{ lat: number[]; errors: Record<string, number>; seconds: number }>('load-client.js', [
          address,
          o.imagePath,
          8,
          o.phaseMs,
          0,
        ]),
      );
      satLat.push(...sat.r.lat);
      add(satErrors, sat.r.errors);
      satSeconds += sat.r.seconds;
      satRuns.push(sat.r.lat.length / sat.r.seconds);
      satWatch.push(sat);
      // The arrival rate is set once, from the first saturation run.
      if (round === 0) rate = Math.round((sat.r.lat.length / sat.r.seconds) * factor * 10) / 10;
      const ov = await watched(() =>
        runJson<OverloadReport>('overload-client.js', [address, o.imagePath, rate, o.phaseMs, warmupMs, 8]),
      );
      ovRuns.push(ov.r);
      ovWatch.push(ov);
    }
    const serverRejected = app.pool.stats().runsRejected - rejectedBefore;
    const satS = summarize(satLat);
    const satThroughput = satLat.length / satSeconds;
    const satW = pooled(satWatch);
    const ovW = pooled(ovWatch);
    const outcomes: Record<string, number> = {};
    for (const r of ovRuns) add(outcomes, r.outcomes);
    const ovSent = ovRuns.reduce((a, r) => a + r.sent, 0);
    const ovOk = outcomes.OK ?? 0;
    const ovRejected = outcomes.RESOURCE_EXHAUSTED ?? 0;
    const ovOther = Object.fromEntries(
      Object.entries(outcomes).filter(([k]) => k !== 'OK' && k !== 'RESOURCE_EXHAUSTED'),
    );
    const goodput = ovRuns.reduce((a, r) => a + r.okCounted, 0) / ovRuns.reduce((a, r) => a + r.countedSeconds, 0);
    const ovS = summarize(ovRuns.flatMap((r) => r.okLat));
    const offered = ovRuns.reduce((a, r) => a + r.offeredRate, 0) / ovRuns.length;
    const ovClientCores =
      ovRuns.reduce((a, r) => a + r.clientCpuMs, 0) / 1000 / ovRuns.reduce((a, r) => a + r.seconds, 0);
    const worst = (k: 'rejectP99' | 'sendLagP99') => Math.max(...ovRuns.map((r) => r[k]));
    const mid = (k: 'rejectP50' | 'retryAfterMsP50' | 'okPreprocessMs' | 'okQueueMs' | 'okInferenceMs') =>
      summarize(ovRuns.map((r) => r[k])).p50;

    // 3. What a refused call costs the server: received and deserialized in full, refused before decoding.
    const REFUSE_N = 300;
    const refuse = await watched(() =>
      runJson<{ count: number; seconds: number; codes: Record<string, number> }>('refuse-client.js', [
        address,
        o.imagePath,
        REFUSE_N,
        8,
      ]),
    );
    const refuseCpuMs = refuse.cpuMs / REFUSE_N;

    // 4. One live stream, `latest`, at `fps`: the one held to the target first, then the comparisons.
    const streams: ({ s: StreamReport } & Watch)[] = [];
    for (const [m, ms] of [[mif, o.streamMs] as const, ...compare.map((c) => [c, o.compareStreamMs] as const)]) {
      const w = await watched(() => runJson<StreamReport>('stream-client.js', [address, o.imagePath, fps, ms, m, 10]));
      streams.push({ s: w.r, ...w });
    }

    const model = o.modelPath.split('/').pop();
    const satCpuPerOk = satW.cpuMs / satLat.length;
    const ovCpuPerOk = ovW.cpuMs / Math.max(1, ovOk);
    lines.push(
      `## Streaming and overload (${model}, default pool: ${pool.workers} workers × ${pool.intraOpThreads} thread, queue ${pool.maxQueue})`,
    );
    lines.push('');
    lines.push(
      `Saturation: closed loop at concurrency 8. Overload: open-loop arrivals, evenly spaced, ` +
        `at ${factor}× the first saturation run's throughput, round-robin over 8 client ` +
        `connections (as from many clients, so no single HTTP/2 connection's event-loop turns pace ` +
        `the offered load), no limit on calls in flight, 30 s deadline; ` +
        `goodput counts OK responses completed inside each sending window after its first ` +
        `${warmupMs / 1000} s (queue filling). The two alternate, ${o.rounds} × ` +
        `${o.phaseMs / 1000} s each, pooled. CPU: process CPU time over wall time, in cores; ` +
        `the machine's cores are shared by server, client processes and anything else running ` +
        `(1-minute load average ${f2(load0)} at the start of this section).`,
    );
    lines.push('');
    lines.push(
      '| phase | offered req/s | OK/s | p50 OK | p99 OK | refused (RESOURCE_EXHAUSTED) | ' +
        'other errors | refusal latency p50 / p99 | retry-after-ms p50 | ' +
        'server event-loop p99 / max | server CPU | server CPU ms per OK | client CPU |',
    );
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    lines.push(
      `| saturation, c=8 | closed loop | ${f1(satThroughput)} | ${f1(satS.p50)} | ` +
        `${f1(satS.p99)} | 0 | ${JSON.stringify(satErrors)} | – | – | ` +
        `${f2(satW.eldP99)} / ${f2(satW.eldMax)} | ${f2(satW.cores)} | ${f1(satCpuPerOk)} | – |`,
    );
    lines.push(
      `| overload, ${factor}× | ${f1(offered)} (target ${f1(rate)}) | ${f1(goodput)} | ` +
        `${f1(ovS.p50)} | ${f1(ovS.p99)} | ${pct(ovRejected / ovSent)} (${ovRejected} of ` +
        `${ovSent}) | ${JSON.stringify(ovOther)} | ${f1(mid('rejectP50'))} / ` +
        `${f1(worst('rejectP99'))} | ${f1(mid('retryAfterMsP50'))} | ${f2(ovW.eldP99)} / ` +
        `${f2(ovW.eldMax)} | ${f2(ovW.cores)} | ${f1(ovCpuPerOk)} | ${f2(ovClientCores)} |`,
    );
    lines.push('');
    lines.push(
      `Per run, saturation req/s: ${satRuns.map(f1).join(', ')}; overload OK/s: ` +
        `${ovRuns.map((r) => f1(r.goodput)).join(', ')}, p99 OK: ` +
        `${ovRuns.map((r) => f1(r.okP99)).join(', ')} ms. The pool counted ${serverRejected} ` +
        `refusals. Send-schedule lag p99 ${f1(worst('sendLagP99'))} ms. ` +
        `A refused call costs the server ${f2(refuseCpuMs)} ms of CPU (${REFUSE_N} calls with the ` +
        `full image refused before decoding, ${f1(REFUSE_N / refuse.r.seconds)}/s at c=8): ` +
        `${f2((refuseCpuMs * ovRejected) / 1000 / ovW.seconds)} cores at the refusal rate above.`,
    );
    const budget = pool.workers + pool.maxQueue;
    const refusedPerOk = ovRejected / Math.max(1, ovOk);
    lines.push('');
    lines.push(
      `Where goodput went: goodput / saturation throughput ≈ (server cores, ` +
        `overload / saturation) × (server CPU per OK, saturation / overload) ` +
        `= ${f2(ovW.cores / satW.cores)} × ${f2(satCpuPerOk / ovCpuPerOk)} = ` +
        `${f2((ovW.cores / satW.cores) * (satCpuPerOk / ovCpuPerOk))}. ` +
        `Of the ${f1(ovCpuPerOk - satCpuPerOk)} ms more CPU per OK response, ` +
        `refusals account for about ${f1(refusedPerOk * refuseCpuMs)} ms (${f2(refusedPerOk)} ` +
        `refusals per OK × ${f2(refuseCpuMs)} ms); the rest is the same work done less efficiently ` +
        `on oversubscribed cores (inference and libvips threads, the main thread receiving ` +
        `${f1((offered * statSync(o.imagePath).size) / 2 ** 20)} MiB/s, the load generator).`,
    );
    const alone = streams[0]!.s;
    lines.push('');
    lines.push(
      `Server-reported medians of accepted calls under overload: decode + preprocess ` +
        `${f1(mid('okPreprocessMs'))} ms, queue ${f1(mid('okQueueMs'))} ms, ` +
        `inference ${f1(mid('okInferenceMs'))} ms; alone (10 sequential calls before the stream ` +
        `below): server total ${f1(alone.probeTotalMs)} ms, of which inference ` +
        `${f1(alone.probeInferenceMs)} ms.`,
    );
    lines.push('');
    lines.push(
      `Under sustained overload every accepted call waits behind a full admission budget ` +
        `(${pool.workers} workers + queue ${pool.maxQueue} = ${budget}): ` +
        `p50 ≈ ${budget} / OK/s = ${f1((budget / goodput) * 1000)} ms (measured ${f1(ovS.p50)}), ` +
        `against 8 / throughput = ${f1((8 / satThroughput) * 1000)} ms at saturation with 8 in ` +
        `flight (measured ${f1(satS.p50)}). The accepted-call latency ratio is therefore about ` +
        `${budget} / 8 = ${f2(budget / 8)} × (saturation throughput / goodput) ` +
        `before any tail effect.`,
    );
    lines.push('');
    lines.push(
      `Live stream: one Detect stream, drop policy \`latest\`, bus.jpg sent at ${fps} frames/s ` +
        `by a timer that never waits for responses (${o.streamMs / 1000} s for max_in_flight ` +
        `${mif}, ${o.compareStreamMs / 1000} s for the comparison). Frame age = delivery − send, ` +
        `delivered frames only; "outside detect()" = frame age − the server's total_ms for the ` +
        `frame: the request's ${Math.round(statSync(o.imagePath).size / 1000)} KB in transit on ` +
        `the one HTTP/2 stream (it needs both event loops to turn), waiting for an in-flight slot, ` +
        `and the response's trip. \`latest\` only drops frames that have reached the server: ` +
        `frames held up in transit are not dropped, they age. Inference time = median ` +
        `server-reported \`timing.inference_ms\`: of 10 unary calls alone just before the stream ` +
        `(the target's unit), and of the stream's delivered frames.`,
    );
    lines.push('');
    lines.push(
      '| max_in_flight | sent | delivered fps | drop rate | frame age p50 | p90 | p99 | max | ' +
        'outside detect() p50 / p99 | inference alone / in stream | server total_ms in stream | ' +
        'server event-loop p99 / max | server CPU | errors |',
    );
    lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const w of streams) {
      const s = w.s;
      lines.push(
        `| ${s.maxInFlight} | ${s.sent} | ${f1(s.deliveredFps)} | ${pct(s.dropRate)} | ` +
          `${f1(s.ageP50)} | ${f1(s.ageP90)} | ${f1(s.ageP99)} | ${f1(s.ageMax)} | ` +
          `${f1(s.outsideP50)} / ${f1(s.outsideP99)} | ${f1(s.probeInferenceMs)} / ` +
          `${f1(s.streamInferenceMs)} | ${f1(s.streamTotalMs)} | ${f2(w.eldP99)} / ${f2(w.eldMax)} | ` +
          `${f2(w.cpuMs / 1000 / w.seconds)} | ` +
          `${s.error ?? (s.unanswered ? `${s.unanswered} unanswered` : 'none')} |`,
      );
    }

    const goodRatio = goodput / satThroughput;
    const p99Ratio = ovS.p99 / satS.p99;
    targets.push(
      `| goodput at ${factor}× overload ≥ 0.9 × saturation throughput | ` +
        `${f1(goodput)} vs ${f1(satThroughput)} req/s | ${f2(goodRatio)} (≥ 0.90) | ` +
        `${goodRatio >= 0.9 ? 'yes' : 'no'} |`,
    );
    targets.push(
      `| accepted-call p99 at ${factor}× overload ≤ 2 × p99 at saturation | ` +
        `${f1(ovS.p99)} vs ${f1(satS.p99)} ms | ${f2(p99Ratio)} (≤ 2.00) | ` +
        `${p99Ratio <= 2 ? 'yes' : 'no'} |`,
    );
    const s = streams[0]!.s;
    const ageRatio = s.ageP99 / s.probeInferenceMs;
    targets.push(
      `| ${fps} fps \`latest\` stream (max_in_flight ${s.maxInFlight}): ` +
        `frame age p99 < 3 × inference time | ${f1(s.ageP99)} vs ${f1(s.probeInferenceMs)} ` +
        `ms | ${f2(ageRatio)} (< 3.00) | ${ageRatio < 3 ? 'yes' : 'no'} |`,
    );
    targets.push(
      `| share refused at ${factor}× overload (reported, no target) | ${pct(ovRejected / ovSent)} | – | – |`,
    );
  } finally {
    await app.close(1000);
    rmSync(config.registry.dataDir, { recursive: true, force: true });
  }
  return { lines, targets };
}
