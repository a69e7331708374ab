/**
 * `sightline batch` as a user runs it (the built CLI in a child process) over coco128: against a server
 * its answers equal Detect's for every image; killed for real mid-run, it leaves complete lines and the
 * rerun does only the rest (counted by the server); it waits out RESOURCE_EXHAUSTED; with --model it
 * runs the same pipeline in-process, and its COCO JSON (official COCO category and image ids) loads in a
 * small COCO evaluator written here. Errors, limits and other edges: batch-edges.test.ts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { CLI, runCli } from '../support/cli.js';
import { COCO80_TO_91 } from '../../src/eval/index.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { coco128Dir, cocoLabelsFile, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';
import { parseExposition, total } from '../observability/support.js';

const haveData = sharedDataOrSkip('batch');
const IMAGES = join(coco128Dir, 'images', 'train2017');
const MODEL = () => modelPath('yolo11n_int8_320.onnx');

interface Line {
  image: string;
  model: string;
  imageWidth: number;
  imageHeight: number;
  detections: {
    classId: number;
    label: string;
    confidence: number;
    xMin: number;
    yMin: number;
    xMax: number;
    yMax: number;
  }[];
}

const readLines = (path: string): Line[] => {
  const text = readFileSync(path, 'utf8');
  assert.ok(text === '' || text.endsWith('\n'), 'the file ends with a complete line');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
};

const plain = (ds: Line['detections']) =>
  ds.map((d) => ({
    classId: d.classId,
    label: d.label,
    confidence: d.confidence,
    xMin: d.xMin,
    yMin: d.yMin,
    xMax: d.xMax,
    yMax: d.yMax,
  }));

/** Images run through the model, as the server counts them. */
const imagesServed = async (srv: TestServer) =>
  total(parseExposition(await srv.app.metrics.scrape()), 'sightline_images_total');

// ---- A small COCO evaluator: AP@0.5 per class, 101-point interpolation, greedy matching by score. ----

interface CocoDoc {
  images: { id: number; file_name: string; width: number; height: number }[];
  categories: { id: number; name: string }[];
  annotations: { id: number; image_id: number; category_id: number; bbox: number[]; score: number }[];
}

const iou = (a: number[], b: number[]) => {
  const w = Math.max(0, Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!));
  const h = Math.max(0, Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!));
  const inter = w * h;
  return inter / ((a[2]! - a[0]!) * (a[3]! - a[1]!) + (b[2]! - b[0]!) * (b[3]! - b[1]!) - inter);
};

/** Ground truth of coco128 (YOLO txt: class cx cy w h, normalised) in pixels, per image id, with COCO category ids. */
function groundTruth(doc: CocoDoc): Map<number, { cls: number; box: number[] }[]> {
  const gt = new Map<number, { cls: number; box: number[] }[]>();
  for (const img of doc.images) {
    const labelFile = join(coco128Dir, 'labels', 'train2017', basename(img.file_name).replace(/\.jpg$/, '.txt'));
    const rows = existsSync(labelFile) ? readFileSync(labelFile, 'utf8').trim().split('\n').filter(Boolean) : [];
    gt.set(
      img.id,
      rows.map((r) => {
        const [c, cx, cy, w, h] = r.split(/\s+/).map(Number) as [number, number, number, number, number];
        return {
          cls: COCO80_TO_91[c]!,
          box: [
            (cx - w / 2) * img.width,
            (cy - h / 2) * img.height,
            (cx + w / 2) * img.width,
            (cy + h / 2) * img.height,
          ],
        };
      }),
    );
  }
  return gt;
}

function mapAt50(doc: CocoDoc): { map: number; classes: number } {
  const gt = groundTruth(doc);
  const classes = new Set([...gt.values()].flat().map((g) => g.cls));
  let sum = 0;
  for (const cls of classes) {
    const nGt = [...gt.values()].flat().filter((g) => g.cls === cls).length;
    const dets = doc.annotations.filter((a) => a.category_id === cls).sort((a, b) => b.score - a.score);
    const used = new Set<string>();
    const tp: number[] = [];
    for (const d of dets) {
      const box = [d.bbox[0]!, d.bbox[1]!, d.bbox[0]! + d.bbox[2]!, d.bbox[1]! + d.bbox[3]!];
      let best = -1;
      let bestIou = 0.5;
      (gt.get(d.image_id) ?? []).forEach((g, k) => {
        if (g.cls !== cls || used.has(`${d.image_id}:${k}`)) return;
        const o = iou(box, g.box);
        if (o >= bestIou) {
          bestIou = o;
          best = k;
        }
      });
      if (best >= 0) used.add(`${d.image_id}:${best}`);
      tp.push(best >= 0 ? 1 : 0);
    }
    const precision: number[] = [];
    const recall: number[] = [];
    let cum = 0;
    tp.forEach((t, i) => {
      cum += t;
      precision.push(cum / (i + 1));
      recall.push(cum / nGt);
    });
    for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
    let ap = 0;
    for (let r = 0; r <= 100; r++) {
      const i = recall.findIndex((x) => x >= r / 100);
      ap += i >= 0 ? precision[i]! : 0;
    }
    sum += ap / 101;
  }
  return { map: sum / classes.size, classes: classes.size };
}

describe('sightline batch', { skip: !haveData }, () => {
  let srv: TestServer;
  let dir: string;
  let reference: Map<string, Line['detections']>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sightline-batch-test-'));
    srv = await startTestServer({
      models: [{ name: 'yolo11n', path: MODEL() }],
      pool: { workers: 2, warmupRuns: 1 },
      drift: { enabled: false },
    });
  });
  after(async () => {
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('against a server: one line per coco128 image, each equal to what Detect answers for it', async () => {
    const out = join(dir, 'server.jsonl');
    const r = await runCli(['batch', IMAGES, '--server', srv.address, '--out', out, '--json'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as {
      found: number;
      detected: number;
      failed: unknown[];
      imagesPerSecond: number;
      detectionsPerClass: Record<string, number>;
    };
    assert.equal(summary.found, 128);
    assert.equal(summary.detected, 128);
    assert.deepEqual(summary.failed, []);
    assert.ok(summary.imagesPerSecond > 0);
    const lines = readLines(out);
    assert.equal(lines.length, 128);
    assert.equal(new Set(lines.map((l) => l.image)).size, 128);
    reference = new Map();
    const files = readdirSync(IMAGES).sort();
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = next++; i < files.length; i = next++)
          reference.set(
            join(IMAGES, files[i]!),
            (await srv.detect({ image: readFileSync(join(IMAGES, files[i]!)) })).detections,
          );
      }),
    );
    for (const l of lines) assert.deepEqual(plain(l.detections), plain(reference.get(l.image)!), l.image);
    const perClass: Record<string, number> = {};
    for (const l of lines) for (const d of l.detections) perClass[d.label] = (perClass[d.label] ?? 0) + 1;
    assert.deepEqual(summary.detectionsPerClass, perClass, 'the summary counts detections per class');
  });

  test('killed mid-run (SIGKILL), it leaves complete lines; the rerun does only the images left', async () => {
    const out = join(dir, 'killed.jsonl');
    const child = spawn(
      process.execPath,
      [CLI, 'batch', IMAGES, '--server', srv.address, '--out', out, '--concurrency', '2'],
      { stdio: 'ignore' },
    );
    const exited = new Promise<void>((r) => child.on('exit', () => r()));
    await waitFor(
      () => existsSync(out) && readFileSync(out, 'utf8').split('\n').length > 20,
      120_000,
      'the first 20 lines',
    );
    child.kill('SIGKILL');
    await exited;
    const before = readLines(out);
    assert.ok(before.length >= 20 && before.length < 128, `${before.length} lines when killed`);
    // Calls the killed client left behind finish (or are dropped) before the count is read.
    await waitFor(
      () => srv.app.pool.stats().admitted === 0 && srv.app.pool.stats().busyWorkers === 0,
      30_000,
      'the server to be idle',
    );
    const served = await imagesServed(srv);
    const r = await runCli(['batch', IMAGES, '--server', srv.address, '--out', out, '--json'], { timeoutMs: 300_000 });
    assert.equal(r.code, 0, r.stderr);
    const summary = JSON.parse(r.stdout) as { skipped: number; detected: number };
    assert.equal(summary.skipped, before.length);
    assert.equal(summary.detected, 128 - before.length);
    assert.equal((await imagesServed(srv)) - served, 128 - before.length, 'the server ran only the images left');
    const after = readLines(out);
    assert.equal(after.length, 128);
    assert.equal(new Set(after.map((l) => l.image)).size, 128, 'no image twice');
    for (const l of after) assert.deepEqual(plain(l.detections), plain(reference.get(l.image)!), l.image);
  });

  test('keeps the admission limits of a small server: RESOURCE_EXHAUSTED is waited out, nothing fails; --annotate-dir', async () => {
    const small = await startTestServer({
      models: [{ name: 'yolo11n', path: MODEL() }],
      pool: { workers: 1, maxQueue: 0, warmupRuns: 0 },
      drift: { enabled: false },
    });
    try {
      const files = readdirSync(IMAGES)
        .sort()
        .slice(0, 12)
        .map((f) => join(IMAGES, f));
      const ann = join(dir, 'annotated');
      const r = await runCli(
        [
          'batch',
          ...files,
          '--server',
          small.address,
          '--out',
          join(dir, 'small.jsonl'),
          '--concurrency',
          '6',
          '--annotate-dir',
          ann,
          '--json',
        ],
        { timeoutMs: 300_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      const summary = JSON.parse(r.stdout) as {
        detected: number;
        failed: unknown[];
        busyRetries: number;
        unavailableRetries: number;
      };
      assert.equal(summary.detected, 12);
      assert.deepEqual(summary.failed, []);
      assert.equal(summary.unavailableRetries, 0);
      assert.ok(
        summary.busyRetries > 0,
        'with one place in the admission budget and 6 calls in flight, some were refused and retried',
      );
      const drawn = readdirSync(ann).sort();
      assert.deepEqual(
        drawn,
        files.map((f) => basename(f)),
      );
      const meta = await sharp(join(ann, drawn[0]!)).metadata();
      const src = await sharp(files[0]!).metadata();
      assert.deepEqual([meta.width, meta.height], [src.width, src.height]);
    } finally {
      await small.close();
    }
  });

  test('--model runs in this process with the same pipeline; --format coco loads in a COCO evaluator', async () => {
    const out = join(dir, 'coco.json');
    const r = await runCli(
      [
        'batch',
        IMAGES,
        '--model',
        MODEL(),
        '--name',
        'yolo11n',
        '--labels',
        cocoLabelsFile,
        '--out',
        out,
        '--format',
        'coco',
        '--workers',
        '2',
        '--json',
      ],
      { timeoutMs: 300_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as CocoDoc;
    assert.equal(doc.images.length, 128);
    assert.deepEqual(new Set(doc.images.map((i) => i.id)).size, 128);
    // The labels are the COCO-80 names: the official ids (1-90 with gaps) and all 80 categories.
    const names = readFileSync(cocoLabelsFile, 'utf8').trim().split('\n');
    assert.deepEqual(
      doc.categories,
      names.map((name, i) => ({ id: COCO80_TO_91[i], name })),
    );
    const ids = new Set(doc.images.map((i) => i.id));
    for (const a of doc.annotations) {
      assert.ok(ids.has(a.image_id) && a.id > 0 && a.bbox[2]! > 0 && a.bbox[3]! > 0 && a.score > 0 && a.score <= 1);
    }
    // The same detections as the server gave (same pipeline, same defaults), image by image; COCO's own
    // image ids (the number in the file name) and file names (below the common folder).
    for (const img of doc.images) {
      assert.equal(img.id, Number(basename(img.file_name, '.jpg')));
      const mine = doc.annotations.filter((a) => a.image_id === img.id).map((a) => [a.category_id, a.score]);
      assert.deepEqual(
        mine,
        reference.get(join(IMAGES, img.file_name))!.map((d) => [COCO80_TO_91[d.classId], d.confidence]),
        img.file_name,
      );
    }
    const { map, classes } = mapAt50(doc);
    // DATA.md: 0.453 at confidence 0.001; at the server default 0.25 (fewer low-confidence true positives) 0.315 was measured. A
    // wrong bbox convention (corners instead of x, y, w, h) or wrong ids scores near 0.
    assert.ok(map > 0.25 && map < 0.6, `mAP@0.5 ${map.toFixed(3)} over ${classes} classes`);
    console.log(`# coco128 mAP@0.5 from the COCO output: ${map.toFixed(3)} over ${classes} classes`);
    assert.ok(existsSync(`${out}.jsonl`), 'the journal that makes a COCO run resumable');
  });
});
