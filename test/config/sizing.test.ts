/** The pool's defaults follow the CPUs the process may use; explicit settings win; libuv's pool follows. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cgroupQuota, cpuBudget, parseCfs, parseCpuMax } from '../../src/config/cpus.cjs';
import { describeSizing, loadConfig, type CpuBudget } from '../../src/config/index.js';
import { CLI } from '../support/cli.js';

const machine = (cpus: number, quota: number | null = null): CpuBudget => cpuBudget(cpus, quota);

test('cgroup quotas: v2 cpu.max and v1 cfs files, "max" and -1 meaning none', () => {
  assert.equal(parseCpuMax('max 100000\n'), null);
  assert.equal(parseCpuMax('200000 100000\n'), 2);
  assert.equal(parseCpuMax('150000 100000'), 1.5);
  assert.equal(parseCfs('-1', '100000'), null);
  assert.equal(parseCfs('400000\n', '100000\n'), 4);
  const files: Record<string, string> = {
    '/proc/self/cgroup': '0::/kubepods/pod1/ctr\n',
    '/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max': '300000 100000\n',
  };
  assert.equal(
    cgroupQuota((p) => files[p] ?? null),
    3,
    'v2, path from /proc/self/cgroup',
  );
  assert.equal(
    cgroupQuota((p) => ({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000' })[p] ?? null),
    0.5,
    'v2, cgroup namespace',
  );
  const v1: Record<string, string> = {
    '/proc/self/cgroup': '4:cpu,cpuacct:/docker/abc\n',
    '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_quota_us': '200000',
    '/sys/fs/cgroup/cpu/docker/abc/cpu.cfs_period_us': '100000',
  };
  assert.equal(
    cgroupQuota((p) => v1[p] ?? null),
    2,
    'v1',
  );
  assert.equal(
    cgroupQuota(() => null),
    null,
    'no cgroup files at all',
  );
});

test('the budget is the affinity, capped by a quota (rounded down, at least 1)', () => {
  assert.deepEqual([machine(16).cpus, machine(16).source], [16, 'affinity']);
  assert.deepEqual([machine(16, 4).cpus, machine(16, 4).source], [4, 'cgroup quota']);
  assert.equal(machine(16, 2.5).cpus, 2);
  assert.equal(machine(16, 0.25).cpus, 1);
  assert.equal(machine(2, 8).cpus, 2, 'a quota above the affinity changes nothing');
});

test('auto: one worker per CPU, 3 queued per worker, a latency session as wide as the machine', () => {
  const at = (cpus: CpuBudget, pool: Record<string, unknown> = {}) =>
    loadConfig({ env: {}, overrides: { pool }, cpus }).pool;
  assert.deepEqual(pick(at(machine(16))), { workers: 16, intraOpThreads: 1, maxQueue: 48, latencyThreads: 16 });
  assert.deepEqual(pick(at(machine(64, 4))), { workers: 4, intraOpThreads: 1, maxQueue: 12, latencyThreads: 4 });
  assert.deepEqual(pick(at(machine(1))), { workers: 1, intraOpThreads: 1, maxQueue: 3, latencyThreads: 0 });
  assert.deepEqual(pick(at(machine(8), { intraOpThreads: 2 })), {
    workers: 4,
    intraOpThreads: 2,
    maxQueue: 12,
    latencyThreads: 8,
  });
  // Explicit settings win, each on its own.
  assert.deepEqual(pick(at(machine(16), { workers: 3 })), {
    workers: 3,
    intraOpThreads: 1,
    maxQueue: 9,
    latencyThreads: 16,
  });
  assert.deepEqual(pick(at(machine(16), { maxQueue: 0, latencyThreads: 0 })), {
    workers: 16,
    intraOpThreads: 1,
    maxQueue: 0,
    latencyThreads: 0,
  });
  assert.deepEqual(pick(at(machine(16), { cpus: 2 })), {
    workers: 2,
    intraOpThreads: 1,
    maxQueue: 6,
    latencyThreads: 2,
  });
});

test('the start-up line says what was chosen and why', () => {
  const c = loadConfig({ env: { SIGHTLINE_POOL__WORKERS: '3' }, cpus: machine(64, 4) });
  const line = describeSizing(c.pool, c.sizing);
  assert.match(
    line,
    /sized for 4 CPUs \(cgroup CPU quota 4 of 64 CPUs\): 3 workers × 1 intra-op thread, queue 9, latency session 4 threads/,
  );
  assert.match(line, /set explicitly: workers/);
  const chart = loadConfig({ env: { SIGHTLINE_POOL__CPUS: '6' }, cpus: machine(64) });
  assert.match(describeSizing(chart.pool, chart.sizing), /sized for 6 CPUs \(pool\.cpus 6\): 6 workers/);
});

test("the sightline launcher sizes libuv's thread pool before any module starts it", () => {
  // A CommonJS preload (it starts nothing) reports the process's threads as it exits.
  const dir = mkdtempSync(join(tmpdir(), 'sightline-uv-'));
  try {
    const probe = join(dir, 'probe.cjs');
    writeFileSync(
      probe,
      "process.on('exit', () => process.stderr.write(`threads=${require('node:fs').readdirSync('/proc/self/task').length}\\n`));\n",
    );
    const threads = (env: Record<string, string>) => {
      const r = spawnSync(process.execPath, ['-r', probe, CLI, '--version'], {
        env: { ...process.env, UV_THREADPOOL_SIZE: '', ...env },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return Number(/threads=(\d+)/.exec(r.stderr)?.[1]);
    };
    const four = threads({ UV_THREADPOOL_SIZE: '4' });
    assert.equal(threads({ SIGHTLINE_POOL__CPUS: '9' }) - four, 5, 'SIGHTLINE_POOL__CPUS=9 gives libuv 9 threads');
    assert.equal(
      threads({ SIGHTLINE_POOL__CPUS: '9', UV_THREADPOOL_SIZE: '6' }) - four,
      2,
      'an explicit UV_THREADPOOL_SIZE wins',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function pick(p: { workers: number; intraOpThreads: number; maxQueue: number; latencyThreads: number }) {
  return {
    workers: p.workers,
    intraOpThreads: p.intraOpThreads,
    maxQueue: p.maxQueue,
    latencyThreads: p.latencyThreads,
  };
}
