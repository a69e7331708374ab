/** Bad input gets INVALID_ARGUMENT (or NOT_FOUND) with a clear message, and the server keeps serving. */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { HealthClient } from '../../src/generated/health/v1/health.js';
import { boxOf, expectedFor, iou } from '../support/compare.js';
import { pngDeclaring } from '../support/bomb.js';
import { rejectsWith } from '../support/assert.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath, sharedPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('detect-input');

describe('Detect input handling', { skip: !haveData }, () => {
  let srv: TestServer;
  let bus: Buffer;
  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer({
      models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }],
      limits: { maxImageBytes: 400_000, maxImagePixels: 1_000_000 },
      pool: { workers: 2, warmupRuns: 1, maxQueue: 16 },
    });
  });
  after(() => srv?.close());

  const stillServes = async () => {
    const r = await srv.detect({ image: readFileSync(imagePath('zidane.jpg')) });
    assert.ok(r.detections.some((d) => d.label === 'person'));
  };

  test('empty image', async () => {
    await rejectsWith(srv.detect({ image: Buffer.alloc(0) }), status.INVALID_ARGUMENT, /empty/i);
    await stillServes();
  });
  test('random bytes', async () => {
    const rnd = Buffer.alloc(4096);
    for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
    await rejectsWith(srv.detect({ image: rnd }), status.INVALID_ARGUMENT, /format|recogni/i);
    await stillServes();
  });
  test('truncated JPEG', async () => {
    const z = readFileSync(imagePath('zidane.jpg'));
    await rejectsWith(
      srv.detect({ image: z.subarray(0, 5000) }),
      status.INVALID_ARGUMENT,
      /decode|truncat|corrupt|premature/i,
    );
    await stillServes();
  });
  test('SVG is refused before any decoder runs', async () => {
    const svg = Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><rect width="100" height="100"/></svg>',
    );
    await rejectsWith(srv.detect({ image: svg }), status.INVALID_ARGUMENT, /format/i);
    await rejectsWith(srv.detect({ image: Buffer.from('%PDF-1.7\n%...') }), status.INVALID_ARGUMENT, /format/i);
  });
  test('over the byte limit', async () => {
    await rejectsWith(srv.detect({ image: bus }), status.INVALID_ARGUMENT, /400000|limit/);
    await stillServes();
  });
  test('over the pixel limit, and a decompression bomb', async () => {
    const big = await sharp({ create: { width: 1200, height: 1000, channels: 3, background: '#808080' } })
      .png()
      .toBuffer();
    await rejectsWith(srv.detect({ image: big }), status.INVALID_ARGUMENT, /pixel/i);
    const bomb = await pngDeclaring(50_000, 50_000);
    const rss0 = process.memoryUsage().rss;
    await rejectsWith(srv.detect({ image: bomb }), status.INVALID_ARGUMENT, /pixel/i);
    assert.ok(process.memoryUsage().rss - rss0 < 200 * 1024 * 1024, 'the bomb was not decoded');
    await stillServes();
  });
  test('thresholds and limits out of range say which field', async () => {
    const z = readFileSync(imagePath('zidane.jpg'));
    await rejectsWith(
      srv.detect({ image: z, confidenceThreshold: 1.5 }),
      status.INVALID_ARGUMENT,
      /confidence_threshold/,
    );
    await rejectsWith(
      srv.detect({ image: z, confidenceThreshold: -0.1 }),
      status.INVALID_ARGUMENT,
      /confidence_threshold/,
    );
    await rejectsWith(srv.detect({ image: z, iouThreshold: 2 }), status.INVALID_ARGUMENT, /iou_threshold/);
    await rejectsWith(
      srv.detect({ image: z, confidenceThreshold: Number.NaN }),
      status.INVALID_ARGUMENT,
      /confidence_threshold/,
    );
    await rejectsWith(srv.detect({ image: z, maxDetections: 100_000 }), status.INVALID_ARGUMENT, /max_detections/);
    await rejectsWith(srv.detect({ image: z, classes: [80] }), status.INVALID_ARGUMENT, /classes/);
    await stillServes();
  });
  test('unknown model or version is NOT_FOUND', async () => {
    const z = readFileSync(imagePath('zidane.jpg'));
    await rejectsWith(srv.detect({ image: z, model: 'nope' }), status.NOT_FOUND, /nope/);
    await rejectsWith(srv.detect({ image: z, version: '99' }), status.NOT_FOUND, /99/);
  });
  test('a deadline that has passed is DEADLINE_EXCEEDED', async () => {
    const z = readFileSync(imagePath('zidane.jpg'));
    await assert.rejects(
      srv.detect({ image: z }, { deadlineMs: 1 }),
      (e: ServiceError) => e.code === status.DEADLINE_EXCEEDED,
    );
    await stillServes();
  });

  test('a grayscale JPEG gives correct boxes (coco128 000000000086.jpg)', async () => {
    const img = readFileSync(sharedPath('datasets', 'coco128', 'images', 'train2017', '000000000086.jpg'));
    const meta = await sharp(img).metadata();
    assert.equal(meta.channels, 1);
    const r = await srv.detect({ image: img });
    // Labels: person and motorcycle (YOLO txt, normalized cx cy w h).
    const gt = readFileSync(sharedPath('datasets', 'coco128', 'labels', 'train2017', '000000000086.txt'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ').map(Number))
      .map(([c, cx, cy, w, h]) => ({
        c: c!,
        box: [
          (cx! - w! / 2) * meta.width!,
          (cy! - h! / 2) * meta.height!,
          (cx! + w! / 2) * meta.width!,
          (cy! + h! / 2) * meta.height!,
        ],
      }));
    for (const g of gt.filter((g) => g.c === 0 || g.c === 3)) {
      const best = Math.max(0, ...r.detections.filter((d) => d.classId === g.c).map((d) => iou(boxOf(d), g.box)));
      assert.ok(best >= 0.5, `class ${g.c} found with IoU ${best.toFixed(2)}`);
    }
  });

  test('EXIF orientation is applied: a rotated bus.jpg tagged to display upright gives the upright boxes', async () => {
    // Pixels stored rotated 90° counter-clockwise, tagged orientation 6 (display: rotate 90° clockwise).
    const stored = await sharp(bus).rotate(-90).jpeg({ quality: 80 }).toBuffer();
    const tagged = await sharp(stored).withMetadata({ orientation: 6 }).jpeg({ quality: 80 }).toBuffer();
    const r = await srv.detect({ image: tagged, confidenceThreshold: 0.3 });
    assert.deepEqual([r.imageWidth, r.imageHeight], [810, 1080]);
    const want = expectedFor('yolo11n_int8_320.onnx', 'bus.jpg').filter((d) => d.score >= 0.5);
    for (const w of want) {
      const best = Math.max(0, ...r.detections.filter((d) => d.classId === w.classId).map((d) => iou(boxOf(d), w.box)));
      assert.ok(best >= 0.85, `${w.label} [${w.box}] found upright with IoU ${best.toFixed(3)}`);
    }
  });

  test('health answers promptly while a burst of Detect calls runs (event loop not blocked)', async () => {
    const z = readFileSync(imagePath('zidane.jpg'));
    const health = new HealthClient(srv.address, (await import('@grpc/grpc-js')).credentials.createInsecure());
    const check = () =>
      new Promise<number>((resolve, reject) => {
        const t0 = performance.now();
        health.check({ service: '' }, (err, res) =>
          err ? reject(err) : (assert.equal(res!.status, 1), resolve(performance.now() - t0)),
        );
      });
    await check();
    let done = false;
    const burst = Promise.all(Array.from({ length: 16 }, () => srv.detect({ image: z }))).finally(() => (done = true));
    const latencies: number[] = [];
    while (!done) {
      latencies.push(await check());
      await new Promise((r) => setTimeout(r, 20));
    }
    await burst;
    health.close();
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(latencies.length / 2)]!;
    assert.ok(latencies.length >= 5, `only ${latencies.length} health checks answered during the burst`);
    assert.ok(p50 < 50, `health check median ${p50.toFixed(1)} ms during the burst`);
  });
});
