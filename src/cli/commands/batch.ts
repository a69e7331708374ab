/**
 * `sightline batch SRC... --out results.jsonl`: detect objects in every image of folders, globs and
 * files, against a running server (--server) or in this process with the server's own serving stack
 * (--model FILE). Resumable: a rerun skips the images already in the output, and refuses to mix in
 * results of other settings or another model. Progress with rate and ETA (a bar on a terminal, a line
 * every 10 s elsewhere); a summary at the end. An error that would be the same for every image (no
 * server, no such model, no permission) stops the run with one line.
 */
import { Command, Option } from 'commander';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { loadConfig } from '../../config/index.js';
import { SightlineError } from '../../errors.js';
import { annotate, IMAGE_EXTENSIONS } from '../../inference/index.js';
import { startSightline, type Sightline } from '../../main.js';
import { silentLogger } from '../../telemetry/logger.js';
import { assertReadableFile, durationArg, fractionArg, intArg, intListArg } from '../args.js';
import { assertOwnCoco, toCoco } from '../batch/coco.js';
import {
  checkSameModel,
  checkSettings,
  Journal,
  readJournal,
  type BatchSettings,
  type JournalName,
  type ResultLine,
} from '../batch/journal.js';
import { startProgress, type Progress } from '../batch/progress.js';
import { runBatch, type BatchStats } from '../batch/runner.js';
import { commonDir, expandSources, VIDEO_NOTE } from '../batch/sources.js';
import { authOptions, DEFAULT_SERVER, detect, detectorClient, type ClientAuth } from '../client.js';
import { reportError } from '../errors.js';

interface BatchFlags extends ClientAuth {
  out: string;
  server?: string;
  model?: string;
  name?: string;
  version?: string;
  labels?: string;
  config?: string;
  workers?: number;
  threads?: number;
  concurrency: number;
  format: 'jsonl' | 'coco';
  annotateDir?: string;
  conf?: number;
  iou?: number;
  maxDet?: number;
  classes?: number[];
  agnostic?: boolean;
  timeout: number;
  maxBusyWait: number;
  unavailableRetries: number;
  progressEvery: number;
  json?: boolean;
}

/** Exit status after a stop by signal: 128 + its number, as shells report it. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

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

interface Counts {
  found: number;
  notImages: number;
  skipped: number;
  /** Neither done nor failed: what a rerun would still send (after a stop). */
  left: number;
  out: string;
}

function printSummary(s: BatchStats, c: Counts, interrupted: boolean): void {
  const rate = s.seconds > 0 ? s.done / s.seconds : 0;
  const other = c.notImages ? ` (${c.notImages} other file(s) left out: not images by their extension)` : '';
  console.log(
    `batch: ${c.found} image(s) found${other}, ${c.skipped} already in ${c.out}, ${s.done} detected, ${s.failed.length} failed, ` +
      `${s.busyRetries} wait(s) for a busy server (RESOURCE_EXHAUSTED), ${s.unavailableRetries} retry(ies) after UNAVAILABLE, ` +
      `${s.seconds.toFixed(1)} s, ${rate.toFixed(1)} img/s`,
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
  if (interrupted) console.log(`interrupted: ${c.left} image(s) not done; the same command again finishes them`);
}

/** --progress-every: a duration, or 0 for no progress lines. */
const progressArg = (v: string) => (v.trim() === '0' ? 0 : durationArg(v));

export function batchCommand(): Command {
  const cmd = new Command('batch')
    .description('detect objects in folders, globs and image files; results as JSON lines or COCO JSON; resumable')
    .argument(
      '<src...>',
      `folders (searched recursively for ${[...IMAGE_EXTENSIONS].join(' ')}), glob patterns (quoted: "cams/**/*.jpg") or image files`,
    )
    .requiredOption('--out <file>', 'results file: one JSON line per image (jsonl), or a COCO JSON document (coco)')
    .option('--server <addr>', `a running server (default ${DEFAULT_SERVER} unless --model is given)`);
  return authOptions(cmd)
    .option(
      '--model <file>',
      'run in this process with the serving pipeline on this ONNX model, instead of calling a server',
    )
    .option('--name <name>', 'model name: on the server (default: its default model), or the name --model is served as')
    .option('--version <v>', 'model version on the server (default: the active one); pins it for the whole run')
    .option('--labels <file>', 'with --model: class names, one per line')
    .option(
      '--config <file>',
      'with --model: server config file (pool, preprocess, limits, defaults)',
      process.env.SIGHTLINE_CONFIG,
    )
    .option('--workers <n>', 'with --model: inference worker threads', intArg)
    .option('--threads <n>', 'with --model: ONNX Runtime intra-op threads per worker', intArg)
    .option('--concurrency <n>', 'calls in flight', intArg, 4)
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
    .option('--timeout <ms>', 'deadline per call in ms', intArg, 60_000)
    .addOption(
      new Option(
        '--max-busy-wait <duration>',
        'longest one image waits in all for a busy server (RESOURCE_EXHAUSTED, after its retry-after-ms) before it fails',
      )
        .argParser(durationArg)
        .default(300_000, '5m'),
    )
    .option(
      '--unavailable-retries <n>',
      'UNAVAILABLE answers in a row retried with back-off (0.25 s, doubling); one more stops the run',
      intArg,
      4,
    )
    .addOption(
      new Option(
        '--progress-every <duration>',
        'when standard error is not a terminal: a progress line this often (0: none)',
      )
        .argParser(progressArg)
        .default(10_000, '10s'),
    )
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      `\nVideo: ${VIDEO_NOTE}.\nA rerun with the same --out skips the images already in it; it refuses other --conf, --iou, --max-det, --classes, ` +
        '--agnostic or another model. Ctrl-C stops at once and keeps every complete line (exit 130); a second Ctrl-C exits without the summary.',
    )
    .action(async (sources: string[], f: BatchFlags) => {
      try {
        await runCommand(sources, f);
      } catch (e) {
        reportError(e, f.model ? undefined : (f.server ?? DEFAULT_SERVER));
      }
    });
}

async function runCommand(sources: string[], f: BatchFlags): Promise<void> {
  if (f.server && f.model)
    throw new SightlineError('INVALID_INPUT', 'give either --server ADDR or --model FILE, not both');
  if (f.model) assertReadableFile('--model', f.model);
  const { images, skipped: notImages } = await expandSources(sources);
  const out = resolve(f.out);
  const journalPath = f.format === 'coco' ? `${out}.jsonl` : out;
  const name: JournalName =
    f.format === 'coco'
      ? { what: `${f.out}.jsonl (the journal of --out ${f.out})`, file: `${f.out}.jsonl` }
      : { what: `--out ${f.out}`, file: f.out };
  if (f.format === 'coco') assertOwnCoco(out, `--out ${f.out}`);
  const settings: BatchSettings = {
    conf: f.conf ?? null,
    iou: f.iou ?? null,
    maxDet: f.maxDet ?? null,
    classes: f.classes ? [...new Set(f.classes)].sort((a, b) => a - b) : null,
    agnostic: !!f.agnostic,
  };
  const written = readJournal(journalPath, name);
  checkSettings(written, settings, name);
  const done = new Set(written.map((l) => l.image));
  const todo = images.filter((p) => !done.has(p));
  const base = commonDir(images);

  // First signal: stop (waits end, calls in flight are cancelled), write the summary; a second exits at once.
  const stop = new AbortController();
  let stoppedBy: string | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stoppedBy) {
      // At once: die of the signal itself (the shell sees 128 + its number). process.exit() would run
      // the exit path, which aborts (SIGABRT) while a --model worker is inside ONNX Runtime.
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.kill(process.pid, signal);
      return;
    }
    stoppedBy = signal;
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // With --model, a server in this process (only when there is work left for it).
  const dataDir = f.model && todo.length ? mkdtempSync(join(tmpdir(), 'sightline-batch-')) : null;
  let app: Sightline | null = null;
  let journal: Journal | null = null;
  let progress: Progress | null = null;
  let stats: BatchStats;
  try {
    if (dataDir) app = await startInProcess(f, dataDir);
    progress = startProgress(todo.length, { tty: !!process.stderr.isTTY && !f.json, everyMs: f.progressEvery });
    const shown = progress;
    const client = app ? detectorClient(`127.0.0.1:${app.port}`) : detectorClient(f.server ?? DEFAULT_SERVER, f);
    const request = {
      model: f.name && !app ? f.name : '',
      version: f.version ?? '',
      confidenceThreshold: f.conf ?? 0,
      iouThreshold: f.iou ?? 0,
      maxDetections: f.maxDet ?? 0,
      classes: settings.classes ?? [],
      agnosticNms: settings.agnostic,
    };
    const j = (journal = new Journal(journalPath));
    // The model every line must come from: the one already in the file, or this run's first answer.
    let model: ResultLine | null = written[0] ?? null;
    try {
      stats = await runBatch({
        images: todo,
        concurrency: f.concurrency,
        signal: stop.signal,
        maxBusyWaitMs: f.maxBusyWait,
        unavailableRetries: f.unavailableRetries,
        call: (image, signal) => detect(client, { ...request, image }, { deadlineMs: f.timeout, signal }),
        onResult: async (path, bytes, res) => {
          const line: ResultLine = { image: path, ...res, frameId: res.frameId.toString(), settings };
          if (model) checkSameModel(model, line, name);
          else model = line;
          j.append(line);
          if (f.annotateDir) {
            const target = join(resolve(f.annotateDir), relative(base, path));
            mkdirSync(dirname(target), { recursive: true });
            await annotate(bytes, res.detections, target);
          }
        },
        onProgress: (s) => shown.update(s),
      });
    } finally {
      client.close();
    }
  } finally {
    progress?.stop();
    journal?.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await app?.close(1000);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
  if (f.format === 'coco') {
    const tmp = `${out}.tmp`;
    writeFileSync(tmp, JSON.stringify(toCoco(readJournal(journalPath, name), sources.join(' '))));
    renameSync(tmp, out);
  }
  const skipped = images.length - todo.length;
  const left = todo.length - stats.done - stats.failed.length;
  const counts: Counts = { found: images.length, notImages, skipped, left, out: f.out };
  const interrupted = stoppedBy !== null;
  if (f.json) {
    const summary = {
      found: counts.found,
      notImages,
      skipped: counts.skipped,
      detected: stats.done,
      failed: stats.failed,
      left,
      retries: stats.busyRetries + stats.unavailableRetries,
      busyRetries: stats.busyRetries,
      unavailableRetries: stats.unavailableRetries,
      seconds: stats.seconds,
      imagesPerSecond: stats.seconds > 0 ? stats.done / stats.seconds : 0,
      detectionsPerClass: Object.fromEntries(stats.detectionsPerClass),
      interrupted,
      out,
    };
    console.log(JSON.stringify(summary));
  } else printSummary(stats, counts, interrupted);
  if (stoppedBy) process.exitCode = SIGNAL_EXIT[stoppedBy] ?? 130;
  else if (stats.failed.length) process.exitCode = 1;
}
