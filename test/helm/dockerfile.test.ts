/**
 * The Dockerfile, checked by reading it (there is no Docker engine in CI): multi-stage, pinned base,
 * `npm ci` then production dependencies only, non-root numeric USER, STOPSIGNAL, exec-form
 * ENTRYPOINT, no ADD, hadolint-style RUN hygiene, and every RUN command is one the README or .ci/run
 * also runs. Also the scripts it runs (prune-onnxruntime.mjs) and the .dockerignore allow-list.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigSchema, envToTree } from '../../src/config/index.js';
import { repoRoot } from '../support/shared.js';

interface Instruction {
  op: string;
  args: string;
  line: number;
  /** Comment lines right above the instruction. */
  comments: string[];
}

/** Instructions with their continuation lines joined; comments kept with the instruction below them. */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  const lines = text.split('\n');
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (/^\s*#/.test(raw)) {
      comments.push(raw.replace(/^\s*#\s?/, ''));
      continue;
    }
    if (!raw.trim()) {
      comments = [];
      continue;
    }
    const start = i;
    let full = raw;
    while (/\\\s*$/.test(full) && i + 1 < lines.length) {
      full = full.replace(/\\\s*$/, ' ');
      i++;
      if (/^\s*#/.test(lines[i]!)) continue; // comment lines inside a continuation are dropped by Docker
      full += lines[i];
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(full);
    assert.ok(m, `Dockerfile line ${start + 1}: not an instruction: ${raw}`);
    out.push({ op: m[1]!.toUpperCase(), args: m[2]!.trim().replace(/\s+/g, ' '), line: start + 1, comments });
    comments = [];
  }
  return out;
}

const dockerfile = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
const ins = parseDockerfile(dockerfile);
const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
const ci = readFileSync(join(repoRoot, '.ci', 'run'), 'utf8');
const norm = (s: string) => s.replace(/\\\n/g, ' ').replace(/\s+/g, ' ').trim();

/** Stages: the FROM and the instructions up to the next FROM. */
function stages(): { from: Instruction; body: Instruction[] }[] {
  const out: { from: Instruction; body: Instruction[] }[] = [];
  for (const i of ins) {
    if (i.op === 'FROM') out.push({ from: i, body: [] });
    else if (out.length) out[out.length - 1]!.body.push(i);
  }
  return out;
}

/** ARG defaults declared before the first FROM (what `FROM ${NODE_IMAGE}` resolves to). */
function globalArgs(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of ins) {
    if (i.op === 'FROM') break;
    if (i.op === 'ARG') {
      const [k, v] = i.args.split('=');
      if (v !== undefined) out[k!] = v.replace(/^"|"$/g, '');
    }
  }
  return out;
}

/** The single commands of a RUN: split on && and ;, with $VAR / ${VAR} arguments dropped. */
function commandsOf(run: Instruction): string[] {
  return run.args
    .split(/&&|;/)
    .map((c) =>
      c
        .replace(/"?\$\{?[A-Za-z_][A-Za-z0-9_]*\}?"?/g, '')
        .replace(/\s+/g, ' ')
        .trim(),
    )
    .filter(Boolean);
}

describe('Dockerfile', () => {
  test('multi-stage: a build stage and a final runtime stage on a Node LTS slim base pinned by tag', () => {
    const st = stages();
    assert.ok(st.length >= 2, 'at least two stages');
    const args = globalArgs();
    for (const { from } of st) {
      const image = from.args.split(' ')[0]!.replace(/^\$\{?([A-Za-z_]+)\}?$/, (_, n: string) => args[n] ?? '');
      assert.match(
        image,
        /^node:(20|22|24)-[a-z]+-slim(@sha256:[a-f0-9]{64})?$/,
        `FROM ${from.args}: Node LTS slim, pinned`,
      );
      assert.doesNotMatch(image, /:latest\b/);
      assert.match(from.args, /\bAS [a-z]+$/i, 'named stage');
    }
    assert.match(st[0]!.from.args, /AS build$/);
    assert.ok(
      st.at(-1)!.body.some((i) => i.op === 'COPY' && i.args.startsWith('--from=build')),
      'the runtime stage copies from the build stage',
    );
  });

  test('build stage: npm ci (which builds), then production dependencies only, then foreign onnxruntime binaries pruned', () => {
    const build = stages()[0]!.body;
    const runs = build.filter((i) => i.op === 'RUN').map((i) => i.args);
    const at = (re: RegExp) => runs.findIndex((r) => re.test(r));
    assert.ok(at(/^npm ci\b/) >= 0, 'npm ci');
    assert.ok(at(/^npm prune --omit=dev\b/) > at(/^npm ci\b/), 'npm prune --omit=dev after npm ci');
    assert.ok(
      at(/^node scripts\/prune-onnxruntime\.mjs "\$\{TARGETARCH\}"$/) > at(/^npm prune/),
      'onnxruntime binaries pruned for TARGETARCH',
    );
    assert.ok(build.some((i) => i.op === 'ARG' && i.args === 'TARGETARCH'));
    assert.ok(
      build.some((i) => i.op === 'ENV' && /ONNXRUNTIME_NODE_INSTALL=skip/.test(i.args)),
      'ONNXRUNTIME_NODE_INSTALL=skip',
    );
    assert.doesNotMatch(dockerfile, /npm install\b/, 'npm ci, never npm install');
  });

  test('runtime stage: compiled code, production node_modules, proto and migrations; non-root numeric USER', () => {
    const rt = stages().at(-1)!.body;
    const copies = rt.filter((i) => i.op === 'COPY').map((i) => i.args);
    for (const p of ['/app/dist/src', '/app/node_modules', '/app/proto', '/app/migrations', '/app/package.json']) {
      assert.ok(
        copies.some((c) => c.startsWith('--from=build') && c.split(' ').includes(p)),
        `copies ${p}`,
      );
    }
    const users = rt.filter((i) => i.op === 'USER');
    assert.ok(users.length >= 1, 'USER set in the final stage');
    const user = users.at(-1)!.args;
    assert.match(user, /^\d+(:\d+)?$/, 'numeric uid[:gid], so Kubernetes can verify runAsNonRoot');
    assert.notEqual(Number(user.split(':')[0]), 0, 'not root');
    const afterUser = rt.slice(rt.indexOf(users.at(-1)!) + 1);
    assert.ok(!afterUser.some((i) => i.op === 'RUN'), 'nothing runs as root after USER');
    // The chart's securityContext uses the same uid.
    const values = readFileSync(join(repoRoot, 'helm', 'sightline', 'values.yaml'), 'utf8');
    assert.match(values, new RegExp(`runAsUser: ${user.split(':')[0]}\\b`));
  });

  test('environment: listen on all interfaces, data and cache directories, and only keys the config schema knows', () => {
    const rt = stages().at(-1)!.body;
    const env: Record<string, string> = {};
    for (const i of rt.filter((x) => x.op === 'ENV'))
      for (const m of i.args.matchAll(/([A-Z_][A-Z0-9_]*)=("[^"]*"|\S+)/g)) env[m[1]!] = m[2]!.replace(/^"|"$/g, '');
    assert.equal(env.SIGHTLINE_GRPC__HOST, '0.0.0.0');
    assert.equal(env.SIGHTLINE_ADMIN__HOST, '0.0.0.0');
    assert.equal(env.SIGHTLINE_REGISTRY__DATA_DIR, '/var/lib/sightline');
    assert.equal(env.SIGHTLINE_REGISTRY__CACHE_DIR, '/var/cache/sightline');
    assert.equal(env.MALLOC_ARENA_MAX, '2');
    const r = ConfigSchema.safeParse(envToTree(env as NodeJS.ProcessEnv));
    assert.ok(
      r.success,
      `the image's SIGHTLINE_* variables are valid configuration: ${r.success ? '' : r.error.message}`,
    );
    assert.match(
      dockerfile,
      /chown 1000:1000 \/var\/lib\/sightline \/var\/cache\/sightline/,
      'the writable directories belong to the service user',
    );
  });

  test('ports, STOPSIGNAL, exec-form ENTRYPOINT and CMD, labels; HEALTHCHECK absent and justified', () => {
    const rt = stages().at(-1)!.body;
    const expose = rt.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.split(' '));
    const defaults = ConfigSchema.parse({});
    assert.deepEqual(
      expose.sort(),
      [String(defaults.grpc.port), String(defaults.admin.port), String(defaults.http.port)].sort(),
    );
    assert.equal(rt.find((i) => i.op === 'STOPSIGNAL')?.args, 'SIGTERM');
    const entry = rt.find((i) => i.op === 'ENTRYPOINT')!;
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      bin: { sightline: string };
      scripts: { start: string };
    };
    // The heap flag is the one `npm start` and `npm run bench` use: the image runs what was measured.
    const startFlags = pkg.scripts.start.split(' ').filter((a) => a.startsWith('--'));
    assert.deepEqual(startFlags, ['--heap-growing-percent=300']);
    assert.deepEqual(JSON.parse(entry.args), ['node', ...startFlags, '/app/dist/src/cli/launch.cjs']);
    assert.equal(`/app/${pkg.bin.sightline}`, '/app/dist/src/cli/launch.cjs', 'ENTRYPOINT is the package bin');
    assert.deepEqual(JSON.parse(rt.find((i) => i.op === 'CMD')!.args), ['serve']);
    const labels = rt
      .filter((i) => i.op === 'LABEL')
      .map((i) => i.args)
      .join(' ');
    for (const l of ['title', 'description', 'version', 'revision', 'licenses'])
      assert.match(labels, new RegExp(`org\\.opencontainers\\.image\\.${l}=`), `OCI label ${l}`);
    const hc = ins.find((i) => i.op === 'HEALTHCHECK');
    if (hc) assert.ok(hc.comments.length > 0, 'a HEALTHCHECK says why');
    else assert.match(dockerfile, /# No HEALTHCHECK: .+/, 'the missing HEALTHCHECK is justified');
  });

  test('the CLI is on PATH in the image: /usr/local/bin/sightline links to the package bin, executable, with a node shebang', () => {
    const rt = stages().at(-1)!.body;
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { bin: { sightline: string } };
    const bin = `/app/${pkg.bin.sightline}`;
    const users = rt.filter((i) => i.op === 'USER');
    const beforeUser = rt.slice(0, rt.indexOf(users.at(-1)!));
    const commands = beforeUser.filter((i) => i.op === 'RUN').flatMap(commandsOf);
    assert.ok(
      commands.includes(`ln -s ${bin} /usr/local/bin/sightline`),
      `a RUN links ${bin} as /usr/local/bin/sightline (kubectl exec POD -- sightline …)`,
    );
    assert.ok(commands.includes(`chmod 755 ${bin}`), `${bin} is executable (tsc writes 644)`);
    assert.ok(
      rt.some((i) => i.op === 'COPY' && i.args.split(' ').includes('/app/dist/src')),
      'the bin is in the image',
    );
    // tsc keeps the shebang, so the link runs under the image's node.
    assert.match(readFileSync(join(repoRoot, 'src', 'cli', 'launch.cts'), 'utf8'), /^#!\/usr\/bin\/env node\n/);
    assert.match(readFileSync(join(repoRoot, pkg.bin.sightline), 'utf8'), /^#!\/usr\/bin\/env node\n/);
  });

  test('hadolint-style rules: no ADD, no latest, no sudo/cd/upgrade, apt hygiene, absolute WORKDIR, JSON exec forms', () => {
    assert.ok(!ins.some((i) => i.op === 'ADD'), 'COPY instead of ADD (DL3020); never ADD a URL');
    assert.doesNotMatch(dockerfile, /:latest\b/);
    assert.ok(!ins.some((i) => i.op === 'MAINTAINER'), 'DL4000');
    for (const run of ins.filter((i) => i.op === 'RUN')) {
      assert.doesNotMatch(run.args, /\bsudo\b/, `line ${run.line}: no sudo (DL3004)`);
      assert.doesNotMatch(run.args, /(^|&&|;)\s*cd\s/, `line ${run.line}: WORKDIR, not cd (DL3003)`);
      assert.doesNotMatch(run.args, /apt-get (dist-)?upgrade/, `line ${run.line}: no upgrade (DL3005)`);
      assert.doesNotMatch(
        run.args,
        /\bcurl\b|\bwget\b/,
        `line ${run.line}: nothing fetched outside the package managers`,
      );
      assert.doesNotMatch(run.args, /\s\|\s/, `line ${run.line}: no pipes (DL4006 would need pipefail)`);
      if (/apt-get install/.test(run.args)) {
        assert.match(
          run.args,
          /apt-get install -y --no-install-recommends/,
          `line ${run.line}: -y --no-install-recommends (DL3014, DL3015)`,
        );
        assert.match(run.args, /apt-get update/, `line ${run.line}: update in the same RUN`);
        assert.match(run.args, /rm -rf \/var\/lib\/apt\/lists\/\*/, `line ${run.line}: apt lists removed (DL3009)`);
      }
    }
    for (const w of ins.filter((i) => i.op === 'WORKDIR')) assert.match(w.args, /^\//, 'absolute WORKDIR (DL3000)');
    for (const i of ins.filter((x) => x.op === 'ENTRYPOINT' || x.op === 'CMD'))
      assert.doesNotThrow(() => JSON.parse(i.args), `${i.op} in exec (JSON) form (DL3025)`);
    assert.equal(ins.filter((i) => i.op === 'ENTRYPOINT').length, 1);
    assert.equal(
      stages()
        .at(-1)!
        .body.filter((i) => i.op === 'CMD').length,
      1,
      'one CMD (DL4003)',
    );
  });

  test('every RUN command is one that the README or .ci/run also runs', () => {
    const docs = norm(readme) + '\n' + norm(ci);
    const runs = ins.filter((i) => i.op === 'RUN');
    assert.ok(runs.length >= 3);
    for (const run of runs) {
      for (const cmd of commandsOf(run))
        assert.ok(docs.includes(cmd), `Dockerfile line ${run.line}: "${cmd}" appears in neither README.md nor .ci/run`);
    }
  });

  test('.dockerignore allows exactly what the build stage copies from the context', () => {
    const ignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    assert.equal(ignore[0], '*', 'an allow-list: everything is excluded first');
    const allowed = ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, ''));
    assert.ok(ignore.includes('src/generated/'), 'generated code is rebuilt, never copied from the host');
    const sources = stages()[0]!
      .body.filter((i) => i.op === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(' ').slice(0, -1));
    for (const src of sources) {
      const p = src.replace(/\/$/, '');
      assert.ok(allowed.includes(p), `COPY ${src} is allowed by .dockerignore`);
      assert.ok(existsSync(join(repoRoot, p)), `${p} exists`);
    }
    for (const a of allowed)
      assert.ok(
        sources.some((s) => s.replace(/\/$/, '') === a),
        `.dockerignore allows ${a}, which the Dockerfile does not copy`,
      );
  });

  test('prune-onnxruntime.mjs keeps linux/<arch> only, and refuses to prune when that binary is missing', (t) => {
    const script = join(repoRoot, 'scripts', 'prune-onnxruntime.mjs');
    const dir = mkdtempSync(join(tmpdir(), 'sightline-prune-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const tree = ['darwin/arm64', 'linux/x64', 'linux/arm64', 'win32/x64', 'win32/arm64'];
    const make = () => {
      for (const p of tree) {
        mkdirSync(join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', p), { recursive: true });
        writeFileSync(
          join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', p, 'onnxruntime_binding.node'),
          '',
        );
      }
    };
    const present = () =>
      tree.filter((p) => existsSync(join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', p)));
    const run = (...a: string[]) => spawnSync(process.execPath, [script, ...a], { cwd: dir, encoding: 'utf8' });
    for (const [arch, kept] of [
      ['amd64', 'linux/x64'],
      ['arm64', 'linux/arm64'],
      ['x64', 'linux/x64'],
    ] as const) {
      make();
      const r = run(arch);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(present(), [kept], `TARGETARCH=${arch}`);
      rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
    }
    make();
    assert.equal(run('s390x').status, 2, 'an unsupported architecture is refused');
    rmSync(join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'arm64'), { recursive: true });
    const r = run('arm64');
    assert.equal(r.status, 1);
    assert.equal(present().length, tree.length - 1, 'nothing removed when the target binary is missing');
  });
});
