/**
 * `sightline batch` (the built CLI in a child process) where things go wrong, on a few images: globs and
 * missing paths; per-image failures (a corrupt image, one over the server's grpc.maxReceiveMessageBytes)
 * against errors that stop the run at once with one line (no server, no such model, no token, no
 * permission); a server that stays busy or stalls, and Ctrl-C; an --out that is not a journal; a rerun
 * with other settings or another model; TLS and token flags; progress lines off a terminal; COCO ids.
 *
 * A real Sightline server answers everything except "busy forever" and "never answers", which a real
 * one cannot be made to do on cue: a bare Detector service on loopback plays those (stubDetector).
 */
import { Metadata, Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { COCO80_NAMES, COCO80_TO_91 } from '../../src/eval/index.js';
import { DetectorService, type DetectRequest } from '../../src/generated/sightline/v1/detector.js';
import { makePki } from '../support/certs.js';
import { CLI, createToken, runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { coco128Dir, imagePath, modelPath } from '../support/shared.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('batch-edges');
const COCO = (n: string) => join(coco128Dir, 'images', 'train2017', `${n}.jpg`);
/** Three small coco128 images (22-46 KB). */
const SMALL = ['000000000536', '000000000562', '000000000643'].map(COCO);
/** The server under test takes messages up to this size: bus.jpg (487 KB) is over it, zidane.jpg (169 KB) under. */
const MAX_RECEIVE = 200_000;

interface Summary {
  found: number;
  notImages: number;
  skipped: number;
  detected: number;
  failed: { image: string; reason: string }[];
  left: number;
  busyRetries: number;
  unavailableRetries: number;
  interrupted: boolean;
}

interface Line {
  image: string;
  model: string;
  detections: { classId: number; label: string }[];
  settings: Record<string, unknown>;
}

/** stderr as lines, asserting it holds no stack trace. */
function stderrLines(stderr: string): string[] {
  assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace expected:\n${stderr}`);
  return stderr.trim().split('\n').filter(Boolean);
}

const readLines = (path: string): Line[] =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);

/** A loopback port where nothing listens. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

type Handler = (call: ServerUnaryCall<DetectRequest, unknown>, cb: sendUnaryData<unknown>) => void;

/** A bare Detector service on loopback answering every call with `handler`; `calls` holds when each came. */
async function stubDetector(handler: Handler): Promise<{ address: string; calls: number[]; close(): void }> {
  const server = new Server();
  const calls: number[] = [];
  server.addService(DetectorService, {
    detect: (call: ServerUnaryCall<DetectRequest, unknown>, cb: sendUnaryData<unknown>) => {
      calls.push(performance.now());
      handler(call, cb);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, calls, close: () => server.forceShutdown() };
}

/** RESOURCE_EXHAUSTED with the server's retry-after-ms, as Sightline's admission control answers. */
const busy =
  (retryAfterMs: number): Handler =>
  (_call, cb) => {
    const metadata = new Metadata();
    metadata.set('retry-after-ms', String(retryAfterMs));
    cb({ code: status.RESOURCE_EXHAUSTED, details: 'the server is at capacity', metadata });
  };

/** `sightline batch ARGS` as a child process, for signals: resolves with its exit and output. */
function spawnBatch(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'batch', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string; at: number }>((r) =>
    child.on('close', (code) => r({ code, stdout, stderr, at: performance.now() })),
  );
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { child, exited };
}

describe('sightline batch: edges', { skip: !haveData }, () => {
  let srv: TestServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sightline-batch-edges-'));
    srv = await startTestServer({
      models: [
        { name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') },
        { name: 'nano', path: modelPath('yolox_nano.onnx') },
      ],
      defaultModel: 'yolo11n',
      grpc: { maxReceiveMessageBytes: MAX_RECEIVE },
      pool: { workers: 1, warmupRuns: 0 },
      drift: { enabled: false },
    });
  });
  after(async () => {
    await srv?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let n = 0;
  const outFile = (ext = 'jsonl') => join(dir, `out-${++n}.${ext}`);
  const batch = (...args: string[]) => runCli(['batch', ...args, '--server', srv.address], { timeoutMs: 120_000 });

  test('sources: a glob takes its images and counts the other files it matches; a missing path or a glob matching nothing is one line, exit 2', async () => {
    const src = join(dir, 'src');
    mkdirSync(join(src, 'deeper'), { recursive: true });
    copyFileSync(SMALL[0]!, join(src, 'a.jpg'));
    copyFileSync(SMALL[1]!, join(src, 'deeper', 'b.jpg'));
    writeFileSync(join(src, 'notes.txt'), 'not an image\n');
    const out = outFile();
    const r = await batch(`${src}/**/*`, '--out', out, '--json');
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.deepEqual([s.found, s.notImages, s.detected], [2, 1, 2]);
    const human = await batch(src, '--out', out);
    assert.equal(human.code, 0, human.stderr);
    assert.match(
      human.stdout,
      /2 image\(s\) found \(1 other file\(s\) left out: not images by their extension\), 2 already in/,
    );

    const missing = await batch(join(dir, 'no-such-folder'), '--out', outFile());
    assert.equal(missing.code, 2);
    assert.deepEqual(stderrLines(missing.stderr), [
      `sightline: ${join(dir, 'no-such-folder')}: no such file or folder (nor a glob pattern): check the path`,
    ]);
    const nothing = await batch(`${src}/**/*.png`, '--out', outFile());
    assert.equal(nothing.code, 2);
    assert.deepEqual(stderrLines(nothing.stderr), [
      `sightline: ${src}/**/*.png: the glob pattern matches no file: check the pattern and its folder`,
    ]);
  });

  test('per-image failures (a corrupt image, one over grpc.maxReceiveMessageBytes) are listed with reasons, the rest is done, exit 1', async () => {
    const corrupt = join(dir, 'corrupt.jpg');
    writeFileSync(corrupt, Buffer.from('this is not a JPEG'));
    const t0 = performance.now();
    const r = await batch(corrupt, imagePath('bus.jpg'), imagePath('zidane.jpg'), '--out', outFile(), '--json');
    assert.equal(r.code, 1, r.stderr);
    const s = JSON.parse(r.stdout) as Summary;
    assert.equal(s.detected, 1);
    assert.equal(s.busyRetries, 0, 'a message over the size limit is not "busy": no retries');
    const reasons = Object.fromEntries(s.failed.map((f) => [basename(f.image), f.reason]));
    assert.match(reasons['corrupt.jpg']!, /^INVALID_ARGUMENT: /);
    assert.match(
      reasons['bus.jpg']!,
      new RegExp(
        String.raw`^RESOURCE_EXHAUSTED: the image \(487438 bytes\) is larger than the server accepts \(.*\): ` +
          String.raw`shrink it, or raise the server's grpc\.maxReceiveMessageBytes$`,
      ),
    );
    assert.ok(performance.now() - t0 < 30_000, 'no retry loop');
    const human = await batch(corrupt, '--out', outFile());
    assert.equal(human.code, 1);
    assert.match(human.stdout, /failures:\n {2}.*corrupt\.jpg: INVALID_ARGUMENT: /);
  });

  test('no server: one line with the status name, no "Resolution note", no "server busy"; stops after a few retries, exit 1', async () => {
    const port = await deadPort();
    const t0 = performance.now();
    const r = await runCli(['batch', ...SMALL, '--server', `127.0.0.1:${port}`, '--out', outFile()]);
    const seconds = (performance.now() - t0) / 1000;
    assert.equal(r.code, 1);
    const lines = stderrLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0]!,
      new RegExp(
        `^sightline: UNAVAILABLE: cannot connect to 127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\): is a Sightline server running there\\?`,
      ),
    );
    assert.doesNotMatch(r.stderr + r.stdout, /Resolution note|busy/);
    assert.equal(r.stdout, '', 'one line, no summary');
    // Default --unavailable-retries 4: 0.25 + 0.5 + 1 + 2 s of back-off.
    assert.ok(seconds < 20, `stopped after ${seconds.toFixed(1)} s`);
  });

  test('no such model: the first NOT_FOUND stops the run with one line, exit 1', async () => {
    const out = outFile();
    const r = await batch(...SMALL, '--name', 'no-such-model', '--out', out);
    assert.equal(r.code, 1);
    const lines = stderrLines(r.stderr);
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0]!, /^sightline: NOT_FOUND: .*no-such-model/);
    assert.equal(readFileSync(out, 'utf8'), '');
  });

  test('a server that stays busy: retry-after-ms is honoured, --max-busy-wait ends the wait and fails the image', async () => {
    const stub = await stubDetector(busy(300));
    try {
      const t0 = performance.now();
      const r = await runCli([
        'batch',
        SMALL[0]!,
        '--server',
        stub.address,
        '--out',
        outFile(),
        '--max-busy-wait',
        '1s',
        '--json',
      ]);
      const ms = performance.now() - t0;
      assert.equal(r.code, 1, r.stderr);
      const s = JSON.parse(r.stdout) as Summary;
      assert.equal(s.failed.length, 1);
      assert.match(
        s.failed[0]!.reason,
        /^RESOURCE_EXHAUSTED: the server stayed busy; waited 1\.0 s in all \(--max-busy-wait\)$/,
      );
      // 300 ms hints (+ up to 25 % jitter) within a 1 s budget: 4 or 5 calls, never closer than the hint.
      assert.ok(stub.calls.length >= 4 && stub.calls.length <= 5, `${stub.calls.length} calls`);
      for (let i = 1; i < stub.calls.length - 1; i++)
        assert.ok(stub.calls[i]! - stub.calls[i - 1]! >= 295, `gap ${stub.calls[i]! - stub.calls[i - 1]!} ms`);
      assert.ok(ms < 15_000);
    } finally {
      stub.close();
    }
  });

  test('Ctrl-C stops at once, while waiting out a busy server and while calls are in flight: summary, complete lines, exit 130', async () => {
    for (const handler of [busy(60_000), () => undefined /* never answers */]) {
      const stub = await stubDetector(handler);
      try {
        const out = outFile();
        const run = spawnBatch([...SMALL, '--server', stub.address, '--out', out, '--concurrency', '2']);
        await waitFor(() => stub.calls.length >= 2, 30_000, 'two calls');
        const sent = performance.now();
        run.child.kill('SIGINT');
        const r = await run.exited;
        assert.equal(r.code, 130, r.stderr);
        assert.ok(r.at - sent < 5000, `exited ${(r.at - sent).toFixed(0)} ms after SIGINT`);
        assert.match(r.stdout, /^batch: 3 image\(s\) found, 0 already in .*, 0 detected, 0 failed/);
        assert.match(r.stdout, /interrupted: 3 image\(s\) not done; the same command again finishes them/);
        assert.equal(readFileSync(out, 'utf8'), '');
      } finally {
        stub.close();
      }
    }
  });

  test('--out that is not a batch journal (COCO, text, a damaged line before others) is refused and kept; a torn last line is dropped', async () => {
    const coco = outFile('json');
    const made = await batch(SMALL[0]!, '--out', coco, '--format', 'coco');
    assert.equal(made.code, 0, made.stderr);
    const foreign = [coco, outFile('txt'), outFile()];
    writeFileSync(foreign[1]!, 'keep me\nplease\n');
    const ours = readFileSync(`${coco}.jsonl`, 'utf8');
    writeFileSync(foreign[2]!, `${ours}garbage\n${ours}`);
    for (const f of foreign) {
      const before = readFileSync(f);
      const r = await batch(SMALL[1]!, '--out', f);
      assert.equal(r.code, 2, f);
      assert.deepEqual(stderrLines(r.stderr).length, 1);
      assert.match(
        r.stderr,
        /^sightline: --out .* exists and is not a results file of sightline batch \(.*\): give another --out, or move that file away\n$/,
      );
      assert.deepEqual(readFileSync(f), before, `${f} is left as it was`);
    }
    // --format coco writes <out> at the end: a file there that it did not write is refused too.
    const r = await batch(SMALL[1]!, '--out', foreign[1]!, '--format', 'coco');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /is not a COCO document of sightline batch/);

    // A torn last line (the machine crashed mid-write): dropped, and the rerun does the rest.
    const torn = outFile();
    writeFileSync(torn, `${ours}{"image":"/elsewhere/x.jpg","model":"yol`);
    const resumed = await batch(...SMALL.slice(0, 2), '--out', torn, '--json');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(
      [(JSON.parse(resumed.stdout) as Summary).skipped, (JSON.parse(resumed.stdout) as Summary).detected],
      [1, 1],
    );
    assert.deepEqual(
      readLines(torn).map((l) => l.image),
      SMALL.slice(0, 2),
    );
  });

  test('a rerun with other settings or another model is refused (one line saying how to start fresh); the same settings resume', async () => {
    const out = outFile();
    const first = await batch(SMALL[0]!, '--out', out, '--conf', '0.5', '--classes', '0,2');
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(readLines(out)[0]!.settings, {
      conf: 0.5,
      iou: null,
      maxDet: null,
      classes: [0, 2],
      agnostic: false,
    });
    const other = await batch(...SMALL, '--out', out, '--conf', '0.3', '--classes', '0,2');
    assert.equal(other.code, 2);
    assert.deepEqual(stderrLines(other.stderr), [
      `sightline: --out ${out} holds results made with --conf 0.5; this run has --conf 0.3: ` +
        `rerun with the same settings to resume, or give another --out (or delete ${out}) to start fresh`,
    ]);
    const unset = await batch(...SMALL, '--out', out, '--classes', '0,2');
    assert.equal(unset.code, 2);
    assert.match(unset.stderr, /this run has no --conf \(the server's default\)/);
    const model = await batch(...SMALL, '--out', out, '--conf', '0.5', '--classes', '2,0', '--name', 'nano');
    assert.equal(model.code, 2);
    assert.deepEqual(stderrLines(model.stderr).length, 1);
    assert.match(
      model.stderr,
      new RegExp(
        String.raw`^sightline: --out .* holds results of model yolo11n v1 \(sha256 [0-9a-f]{12}\), ` +
          String.raw`but the server now answers with nano v1 \(sha256 [0-9a-f]{12}\): ` +
          String.raw`pin the version with --version 1 to go on, or give another --out \(or delete .*\) to start fresh\n$`,
      ),
    );
    assert.equal(readLines(out).length, 1, 'nothing of the other model was written');
    const same = await batch(...SMALL, '--out', out, '--conf', '0.5', '--classes', '2,0', '--json');
    assert.equal(same.code, 0, same.stderr);
    assert.deepEqual(
      [(JSON.parse(same.stdout) as Summary).skipped, (JSON.parse(same.stdout) as Summary).detected],
      [1, 2],
    );
  });

  test('progress off a terminal: a plain line every --progress-every', async () => {
    const r = await batch(
      ...SMALL,
      imagePath('zidane.jpg'),
      '--out',
      outFile(),
      '--concurrency',
      '1',
      '--progress-every',
      '20ms',
    );
    assert.equal(r.code, 0, r.stderr);
    const lines = stderrLines(r.stderr);
    assert.ok(lines.length >= 1, 'at least one progress line');
    for (const l of lines)
      assert.match(l, /^batch: [0-4]\/4 images \(0 failed\), \d+\.\d img\/s, ETA (\d+ s|\?|\d+ min \d+ s)$/);
  });

  test('COCO output: the standard COCO category ids and image ids for a COCO-80 model, class indices for another', async () => {
    const out = outFile('json');
    const r = await batch(...SMALL, '--out', out, '--format', 'coco');
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(readFileSync(out, 'utf8')) as {
      images: { id: number; file_name: string }[];
      categories: { id: number; name: string }[];
      annotations: { image_id: number; category_id: number; score: number }[];
    };
    assert.deepEqual(
      doc.images.map((i) => [i.id, i.file_name]),
      SMALL.map((p) => [Number(basename(p, '.jpg')), basename(p)]),
    );
    assert.deepEqual(
      doc.categories,
      COCO80_NAMES.map((name, i) => ({ id: COCO80_TO_91[i], name })),
    );
    const lines = readLines(`${out}.jsonl`);
    const expected = lines
      .flatMap((l) => l.detections.map((d) => `${Number(basename(l.image, '.jpg'))}:${COCO80_TO_91[d.classId]}`))
      .sort();
    assert.ok(expected.length > 0);
    assert.deepEqual(doc.annotations.map((a) => `${a.image_id}:${a.category_id}`).sort(), expected);

    const other = outFile('json');
    const nano = await batch(imagePath('zidane.jpg'), '--out', other, '--format', 'coco', '--name', 'nano');
    assert.equal(nano.code, 0, nano.stderr);
    const plain = JSON.parse(readFileSync(other, 'utf8')) as typeof doc;
    assert.ok(plain.annotations.length > 0);
    for (const c of plain.categories)
      assert.equal(c.name, `class_${c.id}`, 'labels without names: ids are class indices');
    assert.deepEqual(
      plain.images.map((i) => [i.id, i.file_name]),
      [[1, 'zidane.jpg']],
    );
  });
});

describe('sightline batch: TLS and tokens', { skip: !haveData }, () => {
  test('--ca-file, --tls-server-name and --token-file as the other client commands take them; no token or too little role stops at once', async () => {
    const pki = makePki('batch');
    const srv = await startTestServer({
      models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }],
      tls: { enabled: true, certFile: pki.serverCert, keyFile: pki.serverKey },
      auth: { enabled: true, maxFailuresPerMinute: 1000 },
      pool: { workers: 1, warmupRuns: 0 },
      drift: { enabled: false },
    });
    try {
      const token = (role: string) => createToken(srv.dataDir, `b-${role}`, role);
      const tokenFile = join(pki.dir, 'token');
      writeFileSync(tokenFile, `${await token('inferencer')}\n`);
      const tls = ['--server', srv.address, '--ca-file', pki.caCert, '--tls-server-name', 'localhost'];
      const out = join(pki.dir, 'out.jsonl');
      const ok = await runCli(['batch', ...SMALL, ...tls, '--token-file', tokenFile, '--out', out, '--json']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((JSON.parse(ok.stdout) as Summary).detected, 3);

      const none = await runCli(['batch', ...SMALL, ...tls, '--out', join(pki.dir, 'none.jsonl')]);
      assert.equal(none.code, 1);
      assert.equal(stderrLines(none.stderr).length, 1, none.stderr);
      assert.match(none.stderr, /^sightline: UNAUTHENTICATED: /);
      const viewer = await runCli([
        'batch',
        ...SMALL,
        ...tls,
        '--token',
        await token('viewer'),
        '--out',
        join(pki.dir, 'v.jsonl'),
      ]);
      assert.equal(viewer.code, 1);
      assert.equal(stderrLines(viewer.stderr).length, 1, viewer.stderr);
      assert.match(viewer.stderr, /^sightline: PERMISSION_DENIED: /);
      const missing = await runCli(['batch', ...SMALL, ...tls, '--token-file', join(pki.dir, 'nope'), '--out', out]);
      assert.equal(missing.code, 2);
      assert.deepEqual(stderrLines(missing.stderr), [
        `sightline: --token-file ${join(pki.dir, 'nope')}: no such file or directory`,
      ]);
    } finally {
      await srv.close();
      rmSync(pki.dir, { recursive: true, force: true });
    }
  });
});
