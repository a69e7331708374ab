/**
 * `sightline batch SRC... --out results.jsonl`: detect objects in every image of folders, globs and
 * files, against a running server (--server) or in this process with the server's own serving stack
 * (--model FILE). Resumable: a rerun skips the images already in the output. Progress bar with rate
 * and ETA on a terminal; a summary at the end.
 */
import { Presets, SingleBar } from 'cli-progress';
import { Command, Option } from 'commander';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { loadConfig } from '../../config/index.js';
import { SightlineError } from '../../errors.js';
import { annotate } from '../../inference/index.js';
import { startSightline, type Sightline } from '../../main.js';
import { silentLogger } from '../../telemetry/logger.js';
import { fractionArg, intArg, intListArg } from '../args.js';
import { toCoco } from '../batch/coco.js';
import { Journal, readJournal, type ResultLine } from '../batch/journal.js';
import { runBatch, type BatchStats } from '../batch/runner.js';
import { expandSources, VIDEO_NOTE } from '../batch/sources.js';
import { DEFAULT_SERVER, detect, detectorClient } from '../client.js';

interface BatchFlags {
  out: string;
  server?: string;
  model?: string;
  name?: string;
  labels?: string;
  config?: string;
  workers?: number;
  threads?: number;
  token?: string;
  caFile?: string;
  concurrency: number;
  format: 'jsonl' | 'coco';
  annotateDir?: string;
  conf?: number;
  iou?: number;
  maxDet?: number;
  classes?: number[];
  agnostic?: boolean;
  timeout: number;
  json?: boolean;
}

/** The longest directory all paths lie in (annotated copies keep their paths below it). */
function commonDir(paths: readonly string[]): string {
  if (paths.length === 0) return process.cwd();
  let base = dirname(paths[0]!);
  for (const p of paths) while (!(p + sep).startsWith(base.endsWith(sep) ? base : base + sep)) base = dirname(base);
  return base;
}

/** A Sightline server in this process (role all, loopback, a temporary registry), serving `file`. */
async function startInProcess(f: BatchFlags, dataDir: string): Promise<Sightline> {
  const name = f.name ?? basename(f.model!, extname(f.model!));
  const defined = (o: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
  const config = loadConfig({
    file: f.config,
    overrides: {
      role: 'all',
      grpc: { host: '127.0.0.1', port: 0 },
      tls: { enabled: false },
      auth: { enabled: false },
      admin: { enabled: false },
      http: { enabled: false },
      drift: { enabled: false },
      telemetry: { metrics: false },
      registry: { dataDir },
      models: [defined({ name, path: f.model, labels: f.labels })],
      defaultModel: name,
      pool: defined({ workers: f.workers, intraOpThreads: f.threads }),
    },
  });
  const app = await startSightline(config, silentLogger);
  try {
    await app.ready;
  } catch (e) {
    await app.close(0);
    throw e;
  }
  return app;
}

function printSummary(s: BatchStats, found: number, skipped: number, out: string): void {
  const rate = s.seconds > 0 ? s.done / s.seconds : 0;
  console.log(
    `batch: ${found} image(s) found, ${skipped} already in ${out}, ${s.done} detected, ${s.failed.length} failed, ${s.retries} retried (server busy), ${s.seconds.toFixed(1)} s, ${rate.toFixed(1)} img/s`,
  );
  const classes = [...s.detectionsPerClass].sort((a, b) => b[1] - a[1]);
  if (classes.length) {
    console.log(`detections per class (${classes.reduce((a, [, n]) => a + n, 0)}):`);
    for (const [label, n] of classes) console.log(`  ${label.padEnd(20)} ${n}`);
  }
  if (s.failed.length) {
    console.log('failures:');
    for (const f of s.failed) console.log(`  ${f.image}: ${f.reason}`);
  }
}

export function batchCommand(): Command {
  return new Command('batch')
    .description('detect objects in folders, globs and image files; results as JSON lines or COCO JSON; resumable')
    .argument(
      '<src...>',
      'folders (searched recursively for .jpg .jpeg .png .webp .gif .tif .tiff .avif), glob patterns (quoted: "cams/**/*.jpg") or image files',
    )
    .requiredOption('--out <file>', 'results file: one JSON line per image (jsonl), or a COCO JSON document (coco)')
    .option('--server <addr>', `a running server (default ${DEFAULT_SERVER} unless --model is given)`)
    .option(
      '--model <file>',
      'run in this process with the serving pipeline on this ONNX model, instead of calling a server',
    )
    .option('--name <name>', 'model name: on the server (default: its default model), or the name --model is served as')
    .option('--labels <file>', 'with --model: class names, one per line')
    .option(
      '--config <file>',
      'with --model: server config file (pool, preprocess, limits, defaults)',
      process.env.SIGHTLINE_CONFIG,
    )
    .option('--workers <n>', 'with --model: inference worker threads', intArg)
    .option('--threads <n>', 'with --model: ONNX Runtime intra-op threads per worker', intArg)
    .option('--token <token>', 'bearer token (default: $SIGHTLINE_TOKEN)', process.env.SIGHTLINE_TOKEN)
    .option('--ca-file <pem>', 'CA certificate of the server (TLS)')
    .option('--concurrency <n>', 'calls in flight; RESOURCE_EXHAUSTED answers are waited out and retried', intArg, 4)
    .addOption(
      new Option(
        '--format <format>',
        'jsonl, or coco (then detections are also kept in <out>.jsonl, which makes it resumable)',
      )
        .choices(['jsonl', 'coco'])
        .default('jsonl'),
    )
    .option(
      '--annotate-dir <dir>',
      'also write each image with its boxes drawn, at its path below the common folder of the sources',
    )
    .option('--conf <x>', 'confidence threshold (server default 0.25)', fractionArg)
    .option('--iou <x>', 'NMS IoU threshold (server default 0.45)', fractionArg)
    .option('--max-det <n>', 'maximum detections per image (server default 300)', intArg)
    .option('--classes <ids>', 'comma-separated class ids to keep', intListArg)
    .option('--agnostic', 'class-agnostic NMS')
    .option('--timeout <ms>', 'deadline per image in ms', intArg, 60_000)
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      `\nVideo: ${VIDEO_NOTE}.\nA rerun with the same --out skips the images already in it; an interrupted run (Ctrl-C, or killed) leaves only complete lines.`,
    )
    .action(async (sources: string[], f: BatchFlags) => {
      if (f.server && f.model)
        throw new SightlineError('INVALID_INPUT', 'give either --server ADDR or --model FILE, not both');
      const images = await expandSources(sources);
      const out = resolve(f.out);
      const journalPath = f.format === 'coco' ? `${out}.jsonl` : out;
      const done = new Set(readJournal(journalPath).map((l) => l.image));
      const todo = images.filter((p) => !done.has(p));
      const base = commonDir(images);

      // With --model, a server in this process (only when there is work left for it).
      const dataDir = f.model && todo.length ? mkdtempSync(join(tmpdir(), 'sightline-batch-')) : null;
      let app: Sightline | null = null;
      const stop = new AbortController();
      let interrupts = 0;
      const onSignal = () => {
        // First Ctrl-C: finish the calls in flight and write them; a second one exits at once.
        if (++interrupts > 1) process.exit(130);
        stop.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      let journal: Journal | null = null;
      let bar: SingleBar | null = null;
      try {
        if (dataDir) app = await startInProcess(f, dataDir);
        const client = detectorClient(app ? `127.0.0.1:${app.port}` : (f.server ?? DEFAULT_SERVER), {
          token: f.token,
          caFile: f.caFile,
        });
        journal = new Journal(journalPath);
        if (process.stderr.isTTY && !f.json && todo.length) {
          bar = new SingleBar(
            {
              format: 'batch [{bar}] {value}/{total} | {rate} img/s | ETA {eta_formatted} | {failed} failed',
              hideCursor: true,
              etaBuffer: 50,
              stream: process.stderr,
            },
            Presets.shades_classic,
          );
          bar.start(todo.length, 0, { rate: '0.0', failed: 0 });
        }
        const request = {
          model: f.name && !app ? f.name : '',
          confidenceThreshold: f.conf ?? 0,
          iouThreshold: f.iou ?? 0,
          maxDetections: f.maxDet ?? 0,
          classes: f.classes ?? [],
          agnosticNms: !!f.agnostic,
        };
        const j = journal;
        const stats = await runBatch({
          images: todo,
          concurrency: f.concurrency,
          signal: stop.signal,
          call: (image) => detect(client, { ...request, image }, { deadlineMs: f.timeout }),
          onResult: async (path, bytes, res) => {
            j.append({ image: path, ...res, frameId: res.frameId.toString() } as ResultLine);
            if (f.annotateDir) {
              const target = join(resolve(f.annotateDir), relative(base, path));
              mkdirSync(dirname(target), { recursive: true });
              await annotate(bytes, res.detections, target);
            }
          },
          onProgress: (s) =>
            bar?.update(s.done + s.failed.length, {
              rate: (s.seconds > 0 ? s.done / s.seconds : 0).toFixed(1),
              failed: s.failed.length,
            }),
        });
        bar?.stop();
        client.close();
        journal.close();
        journal = null;
        if (f.format === 'coco') {
          const tmp = `${out}.tmp`;
          writeFileSync(
            tmp,
            JSON.stringify(toCoco(readJournal(journalPath), `sightline batch over ${sources.join(' ')}`)),
          );
          renameSync(tmp, out);
        }
        if (f.json) {
          const summary = {
            found: images.length,
            skipped: images.length - todo.length,
            detected: stats.done,
            failed: stats.failed,
            retries: stats.retries,
            seconds: stats.seconds,
            imagesPerSecond: stats.seconds > 0 ? stats.done / stats.seconds : 0,
            detectionsPerClass: Object.fromEntries(stats.detectionsPerClass),
            interrupted: stop.signal.aborted,
            out,
          };
          console.log(JSON.stringify(summary));
        } else printSummary(stats, images.length, images.length - todo.length, f.out);
        if (stop.signal.aborted) process.exitCode = 130;
        else if (stats.failed.length) process.exitCode = 1;
      } finally {
        bar?.stop();
        journal?.close();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await app?.close(1000);
        if (dataDir) rmSync(dataDir, { recursive: true, force: true });
      }
    });
}
