/**
 * `npm run bench`: side-by-side measurements on this machine, in one run, written to docs/BENCHMARKS.md.
 * For each model with bus.jpg: raw ONNX Runtime throughput on a prepared tensor (several pool/thread
 * layouts), preprocessing alone, and end-to-end gRPC Detect at concurrency 1 and 8 with the server's
 * event-loop delay. Medians and ratios, not absolute thresholds: the machine is shared and noisy.
 * Then streaming and overload on yolov8n_int8 with the default pool (bench/overload.ts);
 * `--only=overload` runs just that part, `--only=models` just the per-model sections; either writes to
 * $BENCH_OUT or a scratch file in the temp dir.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { loadConfig } from '../src/config/index.js';
import { prepareTensor } from '../src/inference/index.js';
import { resolveFamily } from '../src/inference/families/index.js';
import { readOnnxMetadata } from '../src/inference/onnx/metadata.js';
import { startSightline } from '../src/main.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { median, summarize } from './stats.js';
import { streamingAndOverload } from './overload.js';
import { measureSwapRss } from './swap-rss.js';
import { cpuByKind, type ThreadKind } from './thread-cpu.js';
import { grpcFloor, startFloorServer } from './grpc-floor.js';
import { DEFAULT_HTTP2_WINDOW } from '../src/transport/grpc/flow-control.js';
import { threadStats } from '../test/support/threads.js';
import { tempDataDir } from '../test/support/server.js';
import { rmSync } from 'node:fs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const shared = process.env.SIGHTLINE_SHARED_DIR ?? join(root, '..', 'shared');
const quick = process.argv.includes('--quick');
const RAW_MS = quick ? 2000 : 5000;
const E2E_MS = quick ? 3000 : 8000;
const C1_COUNT = quick ? 15 : 40;
// `--only=overload` | `--only=models`: one part only, written to a scratch file unless BENCH_OUT says otherwise.
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const SCENARIO = quick ? { phaseMs: 3000, rounds: 1, streamMs: 3000, compareStreamMs: 3000 } : { phaseMs: 4000, rounds: 2, streamMs: 8000, compareStreamMs: 5000 };

interface ModelCase {
  file: string;
  labels?: string;
}
const MODELS: ModelCase[] = [{ file: 'yolov8n_int8.onnx' }, { file: 'yolox_nano.onnx', labels: join(shared, 'datasets', 'coco128', 'classes.txt') }];
const LAYOUTS = [
  { workers: 1, threads: 1 },
  { workers: 1, threads: 2 },
  { workers: 2, threads: 1 },
  { workers: 2, threads: 2 },
];
// The default (2 × 1, ICC applied), the same without the ICC transform, and the latency-first layout.
const E2E_LAYOUTS = [
  { workers: 2, threads: 1, icc: true },
  { workers: 2, threads: 1, icc: false },
  { workers: 1, threads: 2, icc: true },
];

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

async function preparedTensor(model: Uint8Array, image: Buffer) {
  const s = await ort.InferenceSession.create(model);
  const meta = s.inputMetadata[0]!;
  const dims = (meta.isTensor ? meta.shape : []) as number[];
  const outputs = s.outputMetadata.map((o) => ({ name: o.name, dims: (o.isTensor ? o.shape : []) as number[] }));
  const family = resolveFamily(outputs, { props: readOnnxMetadata(model), inputWidth: dims[3]!, inputHeight: dims[2]! });
  await s.release();
  const target = { width: dims[3]!, height: dims[2]!, spec: family.letterbox };
  const limits = { maxBytes: 64 << 20, maxPixels: 100_000_000 };
  const p = await prepareTensor(image, target, limits, { applyIccProfile: false });
  return { dims, target, limits, tensor: p.tensor, family };
}

async function rawThroughput(model: Uint8Array, tensor: Float32Array, dims: number[], workers: number, threads: number) {
  const ws = Array.from({ length: workers }, () => new Worker(new URL('./raw-worker.js', import.meta.url), { workerData: { model, intraOpThreads: threads, tensor, dims, durationMs: RAW_MS } }));
  await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
  const t0 = performance.now();
  const results = await Promise.all(
    ws.map(
      (w) =>
        new Promise<number[]>((resolve) => {
          w.once('message', (m: { lat: number[] }) => resolve(m.lat));
          w.postMessage('go');
        }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(ws.map((w) => stopRawWorker(w)));
  const lat = results.flat();
  return { workers, threads, throughput: lat.length / seconds, p50: median(lat) };
}

async function stopRawWorker(w: Worker): Promise<void> {
  await new Promise((r) => {
    w.once('message', r);
    w.postMessage('stop');
  });
  await w.terminate();
}

/** One raw-inference worker (1 × threads), ready for single runs ({ type: 'once' }). */
async function rawSingleRunner(model: Uint8Array, tensor: Float32Array, dims: number[], threads: number) {
  const w = new Worker(new URL('./raw-worker.js', import.meta.url), { workerData: { model, intraOpThreads: threads, tensor, dims, durationMs: 0 } });
  await new Promise((r) => w.once('message', r));
  return {
    run: (t: Float32Array) =>
      new Promise<number>((resolve) => {
        w.once('message', (m: { ms: number }) => resolve(m.ms));
        w.postMessage({ type: 'once', tensor: t });
      }),
    close: () => stopRawWorker(w),
  };
}

/** The paired client: one Detect call per request, from its own process. */
async function pairedClient(address: string, image: string, floorPort: number) {
  const child: ChildProcess = fork(join(here, 'paired-client.js'), [address, image, String(floorPort)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise((r) => child.once('message', r));
  return {
    call: () =>
      new Promise<{ ms: number; floorMs: number; serverMs: number; preMs: number; inferenceMs: number }>((resolve, reject) => {
        child.once('message', resolve);
        child.once('error', reject);
        child.send({ type: 'call' });
      }),
    close: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.send({ type: 'close' });
      }),
  };
}

function runLoad(address: string, image: string, concurrency: number, durationMs: number, count: number) {
  return new Promise<{ lat: number[]; errors: Record<string, number>; seconds: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'load-client.js'), address, image, String(concurrency), String(durationMs), String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load client exited ${code}`))));
  });
}

type Prepared = Awaited<ReturnType<typeof preparedTensor>>;

/**
 * c=1 in pairs: each round times preprocessing + raw inference alone (prepareImage and toTensor here,
 * session.run on a raw worker with the pool's threads), then one end-to-end call, so a slow spell on
 * the shared machine hits both sides alike. The gap is the median of the per-pair differences.
 */
async function pairedC1(address: string, window: number, imagePath: string, bytes: Buffer, model: Uint8Array, prep: Prepared, threads: number, icc: boolean, rounds: number) {
  const raw = await rawSingleRunner(model, new Float32Array(3 * prep.dims[2]! * prep.dims[3]!), prep.dims, threads);
  // A bare grpc-js echo in this (the server's) process, called right after each Detect: the floor.
  const floor = await startFloorServer(window);
  const client = await pairedClient(address, imagePath, floor.port);
  const pairs: { pre: number; run: number; call: Awaited<ReturnType<typeof client.call>> }[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const t0 = performance.now();
      const { tensor } = await prepareTensor(bytes, prep.target, prep.limits, { applyIccProfile: icc });
      const pre = performance.now() - t0;
      const run = await raw.run(tensor);
      pairs.push({ pre, run, call: await client.call() });
    }
  } finally {
    await client.close();
    floor.close();
    await raw.close();
  }
  const med = (f: (p: (typeof pairs)[number]) => number): number => median(pairs.map(f));
  return {
    alone: med((p) => p.pre + p.run),
    e2e: med((p) => p.call.ms),
    p99: summarize(pairs.map((p) => p.call.ms)).p99,
    gap: med((p) => p.call.ms - (p.pre + p.run)),
    floor: med((p) => p.call.floorMs),
    beyondFloor: med((p) => p.call.ms - p.call.floorMs - (p.pre + p.run)),
    // Inside detect() but neither preprocessing nor toTensor + session.run: admission, the hand-offs to
    // and from the worker, output decoding and NMS.
    serverRest: med((p) => p.call.serverMs - p.call.preMs - p.call.inferenceMs),
    // Outside detect(): gRPC both ways, the handler, the client.
    outside: med((p) => p.call.ms - p.call.serverMs),
    serverTotal: med((p) => p.call.serverMs),
    // Stage by stage: preprocessing (alone: with toTensor; server: decode + letterbox, toTensor is in its inference_ms).
    stages: { alonePre: med((p) => p.pre), aloneRun: med((p) => p.run), serverPre: med((p) => p.call.preMs), serverInference: med((p) => p.call.inferenceMs) },
  };
}

async function e2e(modelPath: string, labels: string | undefined, imagePath: string, bytes: Buffer, model: Uint8Array, prep: Prepared, workers: number, threads: number, icc: boolean) {
  const config = loadConfig({
    env: {},
    // A fresh registry per run: otherwise the second model would be registered as a new version of
    // "bench" and not promoted, and the run would measure the first model again.
    overrides: { grpc: { port: 0 }, admin: { port: 0 }, log: { level: 'silent' }, registry: { dataDir: tempDataDir() }, models: [{ name: 'bench', path: modelPath, ...(labels ? { labels } : {}) }], pool: { workers, intraOpThreads: threads, maxQueue: 256 }, preprocess: { applyIccProfile: icc } },
  });
  const app = await startSightline(config, silentLogger);
  await app.ready;
  const address = `127.0.0.1:${app.port}`;
  const eld = monitorEventLoopDelay({ resolution: 1 });
  eld.enable();
  const c1 = await pairedC1(address, config.grpc.flowControlWindowBytes, imagePath, bytes, model, prep, threads, icc, C1_COUNT);
  eld.disable();
  const c1Eld = { eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6 };
  eld.reset();
  eld.enable();
  const cpu0 = threadStats();
  const r = await runLoad(address, imagePath, 8, E2E_MS, 0);
  // The pool's threads are told apart by their nice value (default 10, never 0 here).
  const cpu = cpuByKind(cpu0, threadStats(), config.pool.workerNice);
  eld.disable();
  const s = summarize(r.lat);
  const c8 = { throughput: r.lat.length / r.seconds, p50: s.p50, p99: s.p99, errors: r.errors, eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6, cpuPerRequest: perRequest(cpu, r.lat.length) };
  await app.close(1000);
  rmSync(config.registry.dataDir, { recursive: true, force: true });
  return { workers, threads, c1: { ...c1, ...c1Eld }, c8 };
}

const perRequest = (cpu: Record<ThreadKind, number>, n: number): Record<ThreadKind, number> =>
  Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, n > 0 ? v / n : Number.NaN])) as Record<ThreadKind, number>;
const sumOf = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
const signed = (n: number): string => `${n >= 0 ? '+' : ''}${f1(n)}`;

async function main() {
  const image = join(shared, 'images', 'bus.jpg');
  const bytes = readFileSync(image);
  const lines: string[] = [];
  const log = (s = '') => {
    console.log(s);
    lines.push(s);
  };
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  log('# Benchmarks');
  log();
  log(`Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}${process.execArgv.length ? ` (${process.execArgv.join(' ')})` : ''}, onnxruntime-node ${ort.env.versions.node}, sharp ${sharp.versions.sharp}. CPU execution provider. Image: bus.jpg (810x1080 JPEG). All numbers in one run, side by side; latencies in ms, medians unless marked.`);
  const summary: string[] = [];
  if (only !== 'overload') {
    // What any Node gRPC server pays to receive this image, before Sightline does anything.
    const floor = await grpcFloor(bytes.length, [DEFAULT_HTTP2_WINDOW, 4 << 20], quick ? 100 : 300);
    log();
    log('## gRPC floor');
    log();
    log(`A bare grpc-js unary method (identity serializers, no interceptors, no work) receiving bus.jpg's ${bytes.length} bytes and answering 120 bytes, client in another process; median round trip: ${floor.map((f) => `${f2(f.p50)} ms with a ${f.window === DEFAULT_HTTP2_WINDOW ? '64 KiB (Node default)' : `${f.window >> 20} MiB`} receive window`).join(', ')}. Sightline's default window is 4 MiB (grpc.flowControlWindowBytes).`);
  }
  for (const m of only === 'overload' ? [] : MODELS) {
    const modelPath = join(shared, 'models', m.file);
    const model = new Uint8Array(readFileSync(modelPath));
    const prep = await preparedTensor(model, bytes);
    log();
    log(`## ${m.file} (${prep.family.name}, input ${prep.dims[3]}x${prep.dims[2]})`);
    log();
    log('### Raw ONNX Runtime on a prepared tensor');
    log();
    log('| workers × intra-op threads | inferences/s | p50 per run |');
    log('|---|---|---|');
    const raw = [];
    for (const l of LAYOUTS) {
      const r = await rawThroughput(model, prep.tensor, prep.dims, l.workers, l.threads);
      raw.push(r);
      log(`| ${l.workers} × ${l.threads} | ${f1(r.throughput)} | ${f1(r.p50)} |`);
    }
    const best = raw.reduce((a, b) => (b.throughput > a.throughput ? b : a));
    log();
    log(`Best raw layout: ${best.workers} × ${best.threads} at ${f1(best.throughput)}/s.`);
    // Preprocessing alone: decode + orient + resize + pad (sharp), then the float conversion. CPU time
    // of every thread of the process per image, too: it is what end-to-end throughput pays per image.
    const preprocessAlone = async (icc: boolean) => {
      const wall: number[] = [];
      const cpu0 = process.cpuUsage();
      for (let i = 0; i < 30; i++) {
        const q = await prepareTensor(bytes, prep.target, prep.limits, { applyIccProfile: icc });
        wall.push(q.timing.decodeMs + q.timing.preprocessMs);
      }
      const cpu = process.cpuUsage(cpu0);
      return { p50: median(wall), cpuMs: (cpu.user + cpu.system) / 1000 / 30 };
    };
    const pre = await preprocessAlone(true);
    const preNoIcc = await preprocessAlone(false);
    const ten: number[] = [];
    for (let i = 0; i < 30; i++) {
      const t0 = performance.now();
      await prepareTensor(bytes, prep.target, prep.limits, { applyIccProfile: false }, prep.tensor);
      ten.push(performance.now() - t0);
    }
    const tensorMs = median(ten);
    log();
    log(`### Preprocessing alone`);
    log();
    log(`prepareImage (sniff, decode, EXIF, ICC → sRGB, resize, pad): p50 ${f1(pre.p50)} ms, ${f1(pre.cpuMs)} ms of CPU over all threads; without the ICC transform: p50 ${f1(preNoIcc.p50)} ms, ${f1(preNoIcc.cpuMs)} ms of CPU; toTensor (HWC uint8 → NCHW float32, in the worker): p50 ${f2(tensorMs)} ms.`);
    // What one raw inference costs in CPU when the best layout saturates the machine.
    const cores = os.cpus().length;
    const rawCpuMs = (Math.min(cores, best.workers * best.threads) * 1000) / best.throughput;
    const c1Rows: string[] = [];
    const c8Rows: string[] = [];
    for (const l of E2E_LAYOUTS) {
      const r = await e2e(modelPath, m.labels, image, bytes, model, prep, l.workers, l.threads, l.icc);
      const icc = l.icc ? 'applied' : 'skipped';
      const c1 = r.c1;
      const c8 = r.c8;
      const st = c1.stages;
      c1Rows.push(
        `| ${l.workers} × ${l.threads} | ${icc} | ${f1(c1.alone)} (${f1(st.alonePre)} + ${f1(st.aloneRun)}) | ${f1(c1.e2e)} | ${f1(c1.p99)} | ${signed(c1.gap)} | ${f2(c1.floor)} | ${signed(c1.beyondFloor)} | ${f1(c1.serverTotal)} (${f1(st.serverPre)} + ${f1(st.serverInference)} + ${f1(c1.serverRest)}) | ${f1(c1.outside)} | ${f2(c1.eldP99)} / ${f2(c1.eldMax)} |`,
      );
      const k = c8.cpuPerRequest;
      c8Rows.push(`| ${l.workers} × ${l.threads} | ${icc} | ${f1(c8.throughput)} | ${f1(c8.p50)} | ${f1(c8.p99)} | ${f2(c8.eldP99)} / ${f2(c8.eldMax)} | ${f1(k.inference)} / ${f1(k.decode)} / ${f1(k['event loop'])} / ${f1(k.other)} = ${f1(sumOf(k))} | ${JSON.stringify(c8.errors)} |`);
      // Ceiling: all cores spent on raw inference plus preprocessing alone, nothing else.
      const ceiling = (cores * 1000) / (rawCpuMs + (l.icc ? pre.cpuMs : preNoIcc.cpuMs)) / best.throughput;
      summary.push(
        `| ${m.file} | ${l.workers} × ${l.threads}, ICC ${icc} | ${f1(c1.e2e)} vs ${f1(c1.alone)} (${signed(c1.gap)}) | ${f2(c8.throughput / best.throughput)} (${f1(c8.throughput)} / ${f1(best.throughput)}) | ${f2(ceiling)} | ${f2(Math.max(c1.eldP99, c8.eldP99))} |`,
      );
    }
    log();
    log(`### End-to-end gRPC Detect, concurrency 1 (server in this process, client in another)`);
    log();
    log(`${C1_COUNT} rounds, each timing preprocessing + raw inference alone (prepareImage and toTensor, then session.run on a raw session with the pool's threads), then one Detect call, then the same bytes to a bare grpc-js echo method in the server's process (the gRPC floor at that moment), so all three see the same machine. Gap = median of the per-round differences (end-to-end − alone); beyond the floor = median of (end-to-end − floor − alone). The server's total_ms splits into decode + letterbox, toTensor + inference, and the rest (admission, hand-offs to and from the worker, output decoding and NMS); outside = end-to-end − total_ms (gRPC both ways, the handler, the client).`);
    log();
    log('| pool | ICC | alone: preprocessing (with toTensor) + raw inference | end-to-end p50 | p99 | gap | bare gRPC round trip | gap beyond it | server total_ms (decode + letterbox, toTensor + inference, rest) | outside | server event-loop delay p99 / max |');
    log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const row of c1Rows) log(row);
    log();
    log(`### End-to-end gRPC Detect, concurrency 8`);
    log();
    log(`CPU per request: CPU time of the server process's threads over the run divided by the requests answered, by kind: inference (the pool's threads, at their nice value), decode (libvips), event loop (main thread: gRPC, admission, telemetry), other (libuv's pool, V8's garbage collector and compiler). One raw inference costs ${f1(rawCpuMs)} ms of CPU when the best raw layout saturates the ${cores} cores.`);
    log();
    log('| pool | ICC | req/s | p50 | p99 | server event-loop delay p99 / max | CPU ms per request: inference / decode / event loop / other = total | errors |');
    log('|---|---|---|---|---|---|---|---|');
    for (const row of c8Rows) log(row);
  }
  const scenario = only === 'models' ? { lines: [], targets: [] } : await streamingAndOverload({ modelPath: join(shared, 'models', 'yolov8n_int8.onnx'), imagePath: image, ...SCENARIO });
  log();
  for (const l of scenario.lines) log(l);
  if (only === undefined) {
    // Memory over hot swaps: a separate `sightline serve` process; each promote loads one version and drains another.
    const promotes = quick ? 15 : 50;
    const labels = readFileSync(join(shared, 'datasets', 'coco128', 'classes.txt'), 'utf8').trim().split('\n');
    const rss = await measureSwapRss([{ file: join(shared, 'models', 'yolo11n_int8_320.onnx') }, { file: join(shared, 'models', 'yolox_nano.onnx'), labels }, { file: join(shared, 'models', 'yolov8n_int8.onnx') }], promotes);
    const oneVersion = rss.rssSteadyMb - rss.rssOneVersionMb;
    log();
    log('## Memory over repeated hot swaps');
    log();
    log(`${promotes} promotes rotating through yolo11n_int8_320, yolox_nano and yolov8n_int8 (each promote loads one version and drains the one no pointer needs; the rollback target stays warm), RSS of the server process from /proc after each:`);
    log();
    log(`| one version loaded | steady state (active + rollback) | one version's share | after ${promotes} promotes | max | max − steady |`);
    log('|---|---|---|---|---|---|');
    log(`| ${f1(rss.rssOneVersionMb)} MB | ${f1(rss.rssSteadyMb)} MB | ${f1(oneVersion)} MB | ${f1(rss.rssAfterMb)} MB | ${f1(rss.rssMaxMb)} MB | ${f1(rss.rssMaxMb - rss.rssSteadyMb)} MB |`);
    log();
    log(`Samples (MB): ${rss.samplesMb.map((x) => x.toFixed(0)).join(' ')}`);
  }
  log();
  log('## Targets');
  log();
  log('c=1: end-to-end p50 within 3 ms of preprocessing + raw inference alone (one session with the same threads; measured in pairs, above). c=8: throughput at least 0.8 of the best raw layout (yolov8n_int8). Server event-loop delay p99 under 10 ms throughout. Ceiling: the c=8 ratio if the cores did nothing but raw inference and preprocessing, each at the CPU cost measured alone: cores / (raw inference CPU + preprocessing CPU) / best raw.');
  log();
  log('| model | pool | c=1 p50 vs alone (gap) | c=8 throughput / best raw | ceiling | event-loop p99 (ms) |');
  log('|---|---|---|---|---|---|');
  for (const s of summary) log(s);
  log();
  log('Streaming and overload (yolov8n_int8, default pool): goodput at 3× overload at least 0.9 of the throughput at saturation; accepted-call p99 under overload at most 2× the p99 at saturation; frame age p99 of a 30 fps `latest` stream under 3 inference times.');
  log();
  log('| target | measured | ratio | met |');
  log('|---|---|---|---|');
  for (const t of scenario.targets) log(t);
  const out = process.env.BENCH_OUT ?? (only ? join(os.tmpdir(), 'bench-scratch.md') : join(root, 'docs', 'BENCHMARKS.md'));
  mkdirSync(dirname(out), { recursive: true });
  const existing = (() => {
    try {
      return readFileSync(out, 'utf8');
    } catch {
      return '';
    }
  })();
  // Keep hand-written notes below the marker across runs.
  const marker = '<!-- notes -->';
  const notes = existing.includes(marker) ? existing.slice(existing.indexOf(marker)) : `${marker}\n`;
  writeFileSync(out, lines.join('\n') + '\n\n' + notes);
  console.log(`\nwritten to ${out}`);
}

await main();
