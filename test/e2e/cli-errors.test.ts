/**
 * Everyday mistakes with the real `sightline` binary: each is one line on stderr that says what is
 * wrong and what to do, with a non-zero exit status and no stack (the stack with --log-level debug).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AuditLog, defaultMigrationsDir, RegistryStore } from '../../src/registry/index.js';
import { CLI, runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess } from '../support/process.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { cocoLabelsFile, imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('cli-errors');

/** stderr as lines, asserting it holds no stack trace. */
function lines(stderr: string): string[] {
  assert.doesNotMatch(stderr, /^\s+at /m, `no stack trace expected:\n${stderr}`);
  return stderr.trim().split('\n').filter(Boolean);
}

/** A loopback port held open by another program, released after the test. */
async function heldPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, server };
}

/** A loopback port where nothing listens. */
async function deadPort(): Promise<number> {
  const { port, server } = await heldPort();
  await new Promise((r) => server.close(r));
  return port;
}

const tempDir = () => mkdtempSync(join(tmpdir(), 'sightline-cli-errors-'));

describe('mistakes with files and ports', () => {
  test('detect --image with a missing file: one line naming the flag and the file, exit 2; the stack only with --log-level debug', async () => {
    const r = await runCli(['detect', '--image', 'missing.jpg']);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), ['sightline: --image missing.jpg: no such file or directory']);
    const debug = await runCli(['detect', '--image', 'missing.jpg', '--log-level', 'debug']);
    assert.equal(debug.code, 2);
    assert.match(
      debug.stderr,
      /^sightline: --image missing\.jpg: no such file or directory\nSightlineError: .*\n\s+at /,
    );
  });

  test('serve --model with a missing file: one line, exit 2, before anything listens', async () => {
    const dir = tempDir();
    try {
      const r = await runCli([
        'serve',
        '--model',
        'missing.onnx',
        '--data-dir',
        dir,
        '--port',
        '0',
        '--admin-port',
        '0',
      ]);
      assert.equal(r.code, 2);
      assert.deepEqual(lines(r.stderr), ['sightline: --model missing.onnx: no such file or directory']);
      assert.doesNotMatch(r.stdout, /listening/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('serve --model with a file that is no ONNX model (an image): one line, exit 2, before anything listens', async () => {
    const dir = tempDir();
    try {
      const image = imagePath('bus.jpg');
      const r = await runCli(['serve', '--model', image, '--data-dir', dir, '--port', '0', '--admin-port', '0']);
      assert.equal(r.code, 2);
      assert.deepEqual(lines(r.stderr), [
        `sightline: --model ${image}: not an ONNX model (protobuf parse failed: invalid wire type 7 at byte 0): ` +
          'give an ONNX model file (.onnx, as exported for inference)',
      ]);
      assert.equal(r.stdout, '', 'nothing started, so nothing logged');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a start-up failure once the ports are open (a model ONNX Runtime cannot load): one line, exit 2; the stack only with --log-level debug', async () => {
    const dir = tempDir();
    try {
      // A ModelProto with an empty graph: it passes the check before listening; ONNX Runtime refuses it.
      const model = join(dir, 'empty-graph.onnx');
      writeFileSync(model, Uint8Array.from([0x08, 0x08, 0x3a, 0x00]));
      const args = ['serve', '--model', model, '--data-dir', dir, '--port', '0', '--admin-port', '0'];
      const r = await runCli(args);
      assert.equal(r.code, 2);
      assert.equal(lines(r.stderr).length, 1, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(
          `^sightline: model empty-graph \\(${model}\\) cannot be served: .*ONNX Runtime cannot load the model: .*; ` +
            'give a model file that ONNX Runtime loads and whose outputs match a supported family',
        ),
      );
      const log = r.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { event?: string; level: string; err?: unknown });
      assert.ok(
        log.some((l) => l.event === 'grpc_listening'),
        'it failed after gRPC was listening',
      );
      const fatal = log.find((l) => l.level === 'fatal');
      assert.equal(fatal?.event, 'startup_failed');
      assert.equal(fatal?.err, undefined, 'no stack in the log line either');

      const debug = await runCli([...args, '--log-level', 'debug']);
      assert.equal(debug.code, 2);
      assert.match(debug.stderr, /^sightline: model empty-graph .*\nSightlineError: .*\n\s+at /);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the gRPC, the admin or the HTTP port already in use: one line naming the port and the setting that moves it', async () => {
    const { port, server } = await heldPort();
    const dir = tempDir();
    try {
      const serve = (...args: string[]) => runCli(['serve', '--data-dir', dir, ...args]);
      const grpc = await serve('--port', String(port), '--admin-port', '0');
      assert.equal(grpc.code, 1);
      assert.deepEqual(lines(grpc.stderr), [
        `sightline: the gRPC port 127.0.0.1:${port} is already in use (by another ` +
          `Sightline server or another program): stop what holds it, ` +
          `or choose another port with --port, grpc.port or SIGHTLINE_GRPC__PORT`,
      ]);
      const admin = await serve('--port', '0', '--admin-port', String(port));
      assert.equal(admin.code, 1);
      assert.equal(lines(admin.stderr).length, 1);
      assert.match(
        admin.stderr,
        new RegExp(
          `^sightline: the admin HTTP port 127\\.0\\.0\\.1:${port} is already in use .* --admin-port, admin\\.port or SIGHTLINE_ADMIN__PORT`,
        ),
      );
      // The HTTP port (http.enabled, on in the Helm chart; --http-port turns it on).
      const http = await serve('--port', '0', '--admin-port', '0', '--http-port', String(port));
      assert.equal(http.code, 1);
      assert.deepEqual(lines(http.stderr), [
        `sightline: the HTTP port 127.0.0.1:${port} is already in use (by another Sightline server or another program): ` +
          'stop what holds it, or choose another port with --http-port, http.port or SIGHTLINE_HTTP__PORT ' +
          '(http.enabled: false turns it off)',
      ]);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every path a client command is given: one line naming the flag or argument and the file, exit 2, before any call', async () => {
    const dir = tempDir();
    const empty = join(dir, 'empty-token');
    writeFileSync(empty, '\n');
    // Nothing listens there: a path that slipped through the checks would fail with UNAVAILABLE, exit 1.
    const server = `127.0.0.1:${await deadPort()}`;
    try {
      for (const [args, expected] of [
        [['registry', 'upload', 'nofile.onnx', '--model', 'm'], 'model file nofile.onnx: no such file or directory'],
        [['registry', 'upload', dir, '--model', 'm'], `model file ${dir}: is a directory`],
        [
          ['registry', 'upload', modelPath('yolov8n_int8.onnx'), '--model', 'm', '--labels', 'nolabels.txt'],
          '--labels nolabels.txt: no such file or directory',
        ],
        [['registry', 'list', '--token-file', 'nofile'], '--token-file nofile: no such file or directory'],
        [['registry', 'list', '--token-file', empty], `--token-file ${empty}: the file is empty`],
        [['registry', 'list', '--ca-file', 'nofile.pem'], '--ca-file nofile.pem: no such file or directory'],
        [
          ['detect', '--image', imagePath('bus.jpg'), '--token-file', 'nofile'],
          '--token-file nofile: no such file or directory',
        ],
        [['drift', 'det', '--ca-file', 'nofile.pem'], '--ca-file nofile.pem: no such file or directory'],
        [['registry', 'dataset', 'upload', 'golden', 'nodir'], 'dataset folder nodir: no such file or directory'],
        [['registry', 'dataset', 'upload', 'golden', empty], `dataset folder ${empty}: not a directory`],
        [['registry', 'profile', 'det', '1', '--images', 'nodir'], '--images nodir: no such file or directory'],
      ] as const) {
        const r = await runCli([...args, '--server', server]);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.deepEqual(lines(r.stderr), [`sightline: ${expected}`], args.join(' '));
      }
      // Local commands take the same check.
      const validate = await runCli(['validate', '--model', 'nofile.onnx', '--dataset', 'nodir']);
      assert.equal(validate.code, 2);
      assert.deepEqual(lines(validate.stderr), ['sightline: --model nofile.onnx: no such file or directory']);
      const rotate = await runCli(['key', 'rotate', '--data-dir', dir, '--from-key-file', 'nokey']);
      assert.equal(rotate.code, 2);
      assert.deepEqual(lines(rotate.stderr), ['sightline: --from-key-file nokey: no such file or directory']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a mistake in the command line itself (commander's usage errors) exits 2 too; --help and --version exit 0", async () => {
    for (const args of [
      ['registry', 'list', '--no-such-flag'],
      ['registry', 'upload'],
      ['serve', '--port', 'abc'],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^error: /, args.join(' '));
    }
    assert.equal((await runCli(['registry', '--help'])).code, 0);
    assert.equal((await runCli(['--version'])).code, 0);
  });

  test('client commands against an address where nothing listens: the same single line from each, exit 1', async () => {
    const port = await deadPort();
    const server = `127.0.0.1:${port}`;
    const expected =
      `sightline: UNAVAILABLE: cannot connect to ${server} (connect ECONNREFUSED ${server}): ` +
      `is a Sightline server running there? Give its address with --server HOST:PORT`;
    for (const args of [
      ['detect', '--image', imagePath('bus.jpg'), imagePath('zidane.jpg')], // two images, still one line
      ['registry', 'list'],
      ['drift', 'det'],
    ]) {
      const r = await runCli([...args, '--server', server]);
      assert.equal(r.code, 1, args.join(' '));
      assert.deepEqual(lines(r.stderr), [expected], args.join(' '));
    }
  });
});

describe('the registry data directory', () => {
  test('a second server on the same directory is refused naming the first; admin commands work beside it; a killed server leaves no stale lock', async () => {
    const dir = tempDir();
    const first = await serveProcess(['--data-dir', dir, '--log-level', 'warn']);
    try {
      const second = await runCli(['serve', '--data-dir', dir, '--port', '0', '--admin-port', '0']);
      assert.equal(second.code, 1);
      assert.equal(lines(second.stderr).length, 1);
      assert.match(
        second.stderr,
        new RegExp(
          `^sightline: the registry data directory ${dir} is in use by another Sightline server ` +
            `\\(pid ${first.child.pid}, started [\\d-]+T[\\d:.]+Z\\): stop that server, ` +
            `or give this one another directory \\(--data-dir, registry\\.dataDir\\)$`,
          'm',
        ),
      );
      assert.doesNotMatch(second.stdout, /listening/);
      // Refused before its worker threads start: the lock is taken first.
      assert.doesNotMatch(second.stdout, /"event":"(pool_sized|worker_priority)"/);
      const tokens = await runCli(['token', 'list', '--data-dir', dir]);
      assert.equal(tokens.code, 0, tokens.stderr);
      assert.equal(
        tokens.stdout.trim(),
        'no tokens yet: create one with sightline token create --name NAME --role ROLE',
      );
      assert.equal((await runCli(['audit', '--verify', '--data-dir', dir])).code, 0);
      await first.kill('SIGKILL');
      const restarted = await serveProcess(['--data-dir', dir, '--log-level', 'warn']);
      await restarted.kill('SIGTERM');
    } finally {
      await first.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('token list and audit on a directory without a registry say so instead of creating one', async () => {
    const dir = join(tmpdir(), `sightline-no-such-registry-${process.pid}`);
    const r = await runCli(['token', 'list', '--data-dir', dir]);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), [
      `sightline: no registry database in ${dir}: give the server's data directory with --data-dir (or registry.dataDir in --config)`,
    ]);
    assert.equal((await runCli(['audit', '--data-dir', dir])).code, 2);
  });

  test('`sightline audit --json | head -1`: the reader leaving early is not an error (EPIPE: quiet, exit 0)', async () => {
    const dir = tempDir();
    try {
      const store = RegistryStore.open(dir, defaultMigrationsDir());
      const audit = new AuditLog(store.database);
      // Far more than a pipe buffers (64 KiB), so the CLI is still writing when the reader goes.
      store.database.transaction(() => {
        for (let i = 0; i < 3000; i++)
          audit.append({
            principal: 'test',
            peer: 'local',
            action: 'token.create',
            target: `t${i}`,
            outcome: 'ok',
            reason: 'x'.repeat(100),
          });
      })();
      store.close();
      const child = spawn(process.execPath, [CLI, 'audit', '--json', '--data-dir', dir], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.once('data', () => child.stdout.destroy());
      const code = await new Promise((r) => child.on('close', r));
      assert.equal(stderr, '');
      assert.equal(code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('gRPC errors from a running server', { skip: !haveData }, () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 1, warmupRuns: 0 },
    });
  });
  after(async () => srv?.close());

  test('status names, not numbers, in every client command; an error that is not about one image is printed once', async () => {
    const detect = await runCli([
      'detect',
      '--image',
      imagePath('bus.jpg'),
      imagePath('zidane.jpg'),
      '--model',
      'nosuch',
      '--server',
      srv.address,
    ]);
    assert.equal(detect.code, 1);
    assert.equal(lines(detect.stderr).length, 1);
    assert.match(detect.stderr, /^sightline: NOT_FOUND: .*nosuch/);
    for (const args of [
      ['registry', 'status', 'nosuch'],
      ['drift', 'nosuch'],
    ]) {
      const r = await runCli([...args, '--server', srv.address]);
      assert.equal(r.code, 1, args.join(' '));
      assert.equal(lines(r.stderr).length, 1, args.join(' '));
      assert.match(r.stderr, /^sightline: NOT_FOUND: /, args.join(' '));
    }
  });

  test('a file the server refuses is reported for that image, and the other images are still answered', async () => {
    const r = await runCli(['detect', '--image', cocoLabelsFile, imagePath('bus.jpg'), '--server', srv.address]);
    assert.equal(r.code, 1);
    assert.deepEqual(
      lines(r.stderr).map((l) => l.replace(/: INVALID_ARGUMENT: .*/, ': INVALID_ARGUMENT')),
      [`${cocoLabelsFile}: INVALID_ARGUMENT`],
    );
    assert.match(r.stdout, /bus\.jpg: 810x1080, model det v1, \d+ detections/);
  });
});
