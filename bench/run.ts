/**
 * `npm run bench`: side-by-side measurements on this machine, in one run, written to docs/BENCHMARKS.md.
 * For each model with bus.jpg: raw ONNX Runtime throughput on a prepared tensor (several pool/thread
 * layouts), preprocessing alone, and end-to-end gRPC Detect at concurrency 1 and 8 with the server's
 * event-loop delay. Medians and ratios, not absolute thresholds: the machine is shared and noisy.
 * Then streaming and overload on yolov8n_int8 with the default pool (bench/overload.ts);
 * `--only=overload` runs just that part and writes to $BENCH_OUT or a scratch file in the temp dir.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { loadConfig } from '../src/config/index.js';
import { prepareImage } from '../src/inference/index.js';
import { toTensor } from '../src/inference/preprocess/tensor.js';
import { resolveFamily } from '../src/inference/families/index.js';
import { readOnnxMetadata } from '../src/inference/onnx/metadata.js';
import { startSightline } from '../src/main.js';
import { silentLogger } from '../src/telemetry/logger.js';
import { median, summarize } from './stats.js';
import { streamingAndOverload } from './overload.js';
import { measureSwapRss } from './swap-rss.js';
import { tempDataDir } from '../test/support/server.js';
import { rmSync } from 'node:fs';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const shared = process.env.SIGHTLINE_SHARED_DIR ?? join(root, '..', 'shared');
const quick = process.argv.includes('--quick');
const RAW_MS = quick ? 2000 : 5000;
const E2E_MS = quick ? 3000 : 8000;
const C1_COUNT = quick ? 15 : 40;
// `--only=overload`: only the streaming and overload section, written to a scratch file unless BENCH_OUT says otherwise.
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
  const p = await prepareImage(image, target, limits);
  return { dims, target, limits, tensor: toTensor(p.pixels, p.width, p.height, family.letterbox), pixels: p.pixels, family };
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
  await Promise.all(ws.map((w) => w.terminate()));
  const lat = results.flat();
  return { workers, threads, throughput: lat.length / seconds, p50: median(lat) };
}

function runLoad(address: string, image: string, concurrency: number, durationMs: number, count: number) {
  return new Promise<{ lat: number[]; errors: Record<string, number>; seconds: number }>((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'load-client.js'), address, image, String(concurrency), String(durationMs), String(count)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`load client exited ${code}`))));
  });
}

async function e2e(modelPath: string, labels: string | undefined, imagePath: string, workers: number, threads: number, icc: boolean) {
  const config = loadConfig({
    env: {},
    // A fresh registry per run: otherwise the second model would be registered as a new version of
    // "bench" and not promoted, and the run would measure the first model again.
    overrides: { grpc: { port: 0 }, admin: { port: 0 }, log: { level: 'silent' }, registry: { dataDir: tempDataDir() }, models: [{ name: 'bench', path: modelPath, ...(labels ? { labels } : {}) }], pool: { workers, intraOpThreads: threads, maxQueue: 256 }, preprocess: { applyIccProfile: icc } },
  });
  const app = await startSightline(config, silentLogger);
  await app.ready;
  const address = `127.0.0.1:${app.port}`;
  const phase = async (concurrency: number, durationMs: number, count: number) => {
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    const r = await runLoad(address, imagePath, concurrency, durationMs, count);
    eld.disable();
    const s = summarize(r.lat);
    return { concurrency, throughput: r.lat.length / r.seconds, p50: s.p50, p99: s.p99, errors: r.errors, eldP99: eld.percentile(99) / 1e6, eldMax: eld.max / 1e6 };
  };
  const c1 = await phase(1, 0, C1_COUNT);
  const c8 = await phase(8, E2E_MS, 0);
  await app.close(1000);
  rmSync(config.registry.dataDir, { recursive: true, force: true });
  return { workers, threads, c1, c8 };
}

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
  log(`Generated by \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}, onnxruntime-node ${ort.env.versions.node}, sharp ${sharp.versions.sharp}. CPU execution provider. Image: bus.jpg (810x1080 JPEG). All numbers in one run, side by side; latencies in ms, medians unless marked.`);
  const summary: string[] = [];
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
    // Preprocessing alone: decode + orient + resize + pad (sharp), and the float conversion.
    const pre: number[] = [];
    const preNoIcc: number[] = [];
    const ten: number[] = [];
    for (let i = 0; i < 30; i++) {
      const q = await prepareImage(bytes, prep.target, prep.limits, { applyIccProfile: false });
      preNoIcc.push(q.timing.decodeMs + q.timing.preprocessMs);
      const p = await prepareImage(bytes, prep.target, prep.limits);
      pre.push(p.timing.decodeMs + p.timing.preprocessMs);
      const t0 = performance.now();
      toTensor(p.pixels, p.width, p.height, prep.family.letterbox, prep.tensor);
      ten.push(performance.now() - t0);
    }
    log();
    log(`### Preprocessing alone`);
    log();
    log(`prepareImage (sniff, decode, EXIF, ICC → sRGB, resize, pad): p50 ${f1(median(pre))} ms; without the ICC transform: p50 ${f1(median(preNoIcc))} ms; toTensor (HWC uint8 → NCHW float32, in the worker): p50 ${f2(median(ten))} ms.`);
    log();
    log('### End-to-end gRPC Detect (server in this process, load from a separate client process)');
    log();
    log('| pool | ICC | concurrency | req/s | p50 | p99 | server event-loop delay p99 / max | errors |');
    log('|---|---|---|---|---|---|---|---|');
    for (const l of E2E_LAYOUTS) {
      const r = await e2e(modelPath, m.labels, image, l.workers, l.threads, l.icc);
      const icc = l.icc ? 'applied' : 'skipped';
      for (const c of [r.c1, r.c8]) {
        log(`| ${l.workers} × ${l.threads} | ${icc} | ${c.concurrency} | ${f1(c.throughput)} | ${f1(c.p50)} | ${f1(c.p99)} | ${f2(c.eldP99)} / ${f2(c.eldMax)} | ${JSON.stringify(c.errors)} |`);
      }
      const rawSame = raw.find((x) => x.workers === 1 && x.threads === l.threads)!;
      const alone = median(l.icc ? pre : preNoIcc) + rawSame.p50;
      summary.push(
        `| ${m.file} | ${l.workers} × ${l.threads}, ICC ${icc} | ${f1(r.c1.p50)} vs ${f1(alone)} (${r.c1.p50 - alone >= 0 ? '+' : ''}${f1(r.c1.p50 - alone)}) | ${f2(r.c8.throughput / best.throughput)} (${f1(r.c8.throughput)} / ${f1(best.throughput)}) | ${f2(Math.max(r.c1.eldP99, r.c8.eldP99))} |`,
      );
    }
  }
  const scenario = await streamingAndOverload({ modelPath: join(shared, 'models', 'yolov8n_int8.onnx'), imagePath: image, ...SCENARIO });
  log();
  for (const l of scenario.lines) log(l);
  if (only !== 'overload') {
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
  log('c=1: end-to-end p50 within 3 ms of preprocessing p50 + raw inference p50 (one session with the same threads, alone). c=8: throughput at least 0.8 of the best raw layout (yolov8n_int8). Server event-loop delay p99 under 10 ms throughout.');
  log();
  log('| model | pool | c=1 p50 vs preprocess + raw (gap) | c=8 throughput / best raw | event-loop p99 (ms) |');
  log('|---|---|---|---|---|');
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
