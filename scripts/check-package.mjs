#!/usr/bin/env node
/**
 * The package users install is the one `npm pack` makes, so try it as they would: pack the built
 * checkout, install the tarball globally into a scratch prefix, then run the installed `sightline`:
 * --help, --version, and a real server with a real Detect. Run after a build (it packs the current
 * dist/); .ci/run runs it. Usage:
 *   node scripts/check-package.mjs [shared-dir]     (default ../shared, or SIGHTLINE_SHARED_DIR)
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const shared = resolve(process.argv[2] ?? process.env.SIGHTLINE_SHARED_DIR ?? join(root, '..', 'shared'));
const model = join(shared, 'models', 'yolo11n_int8_320.onnx');
const image = join(shared, 'images', 'bus.jpg');
const START_TIMEOUT_MS = 120_000;

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

/** Starts the installed `sightline serve` and resolves with its gRPC port once it serves. */
function serve(bin, dataDir) {
  const child = spawn(
    bin,
    [
      'serve',
      '--model',
      model,
      '--name',
      'det',
      '--data-dir',
      dataDir,
      '--port',
      '0',
      '--admin-port',
      '0',
      '--workers',
      '1',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return new Promise((resolvePort, reject) => {
    let port = 0;
    let buf = '';
    const timer = setTimeout(
      () => (child.kill('SIGKILL'), reject(new Error('the installed server did not start serving in time'))),
      START_TIMEOUT_MS,
    );
    child.on(
      'exit',
      (code) => (clearTimeout(timer), reject(new Error(`the installed server exited (${code}) before serving`))),
    );
    child.stdout.on('data', (d) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const ev = line.startsWith('{') ? JSON.parse(line) : {};
        if (ev.event === 'grpc_listening') port = ev.port;
        if (ev.event === 'serving') {
          clearTimeout(timer);
          resolvePort({ child, port });
        }
      }
    });
  });
}

/**
 * A user's install unpacks better-sqlite3's prebuilt addon; where it cannot be downloaded (only the npm
 * registry is reachable here) it would compile it, 1.5 min of CPU. prebuild-install also takes a local
 * prebuild: hand it the checkout's own build, the same addon for the same Node. Returns the folder.
 */
function betterSqlitePrebuild(dir) {
  const pkgDir = join(root, 'node_modules', 'better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  mkdirSync(dir);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  run('tar', ['-czf', join(dir, name), '-C', pkgDir, 'build/Release/better_sqlite3.node']);
  return dir;
}

const scratch = mkdtempSync(join(tmpdir(), 'sightline-package-'));
let server = null;
try {
  if (!existsSync(join(root, 'dist', 'src', 'cli', 'bin.js'))) throw new Error('no dist/: build first (npm run build)');
  if (!existsSync(model)) throw new Error(`shared test data not found at ${shared}`);
  const started = Date.now();
  // dist/ is the build just made: --ignore-scripts spares a second `prepare` (a full build).
  const tarball = join(
    scratch,
    run('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', scratch], { cwd: root })
      .trim()
      .split('\n')
      .pop(),
  );
  const prefix = join(scratch, 'prefix');
  run(
    'npm',
    [
      'install',
      '--global',
      '--prefix',
      prefix,
      tarball,
      '--onnxruntime-node-install=skip',
      '--prefer-offline',
      '--no-audit',
      '--no-fund',
    ],
    {
      cwd: scratch,
      env: {
        ...process.env,
        npm_config_better_sqlite3_local_prebuilds: betterSqlitePrebuild(join(scratch, 'prebuilds')),
      },
    },
  );
  console.log(`packed and installed into ${prefix} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const bin = join(prefix, 'bin', 'sightline');
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const help = run(bin, ['--help'], { cwd: scratch });
  check(
    /Usage: sightline/.test(help) && /\bserve\b/.test(help) && /\bdetect\b/.test(help),
    'sightline --help lists the commands',
  );
  check(run(bin, ['--version'], { cwd: scratch }).trim() === pkg.version, `sightline --version is ${pkg.version}`);
  server = await serve(bin, join(scratch, 'data'));
  const detect = run(bin, ['detect', '--image', image, '--server', `127.0.0.1:${server.port}`, '--json'], {
    cwd: scratch,
  });
  const answer = JSON.parse(detect);
  check(
    answer.model === 'det' && answer.detections.some((d) => d.label === 'bus'),
    'the installed server and client find the bus in bus.jpg',
  );
  server.child.kill('SIGTERM');
  const code = await new Promise((r) => server.child.once('exit', r));
  server = null;
  check(code === 0, 'the installed server stops cleanly on SIGTERM');
} finally {
  server?.child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
}
