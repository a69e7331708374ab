/**
 * The pool's 'auto' settings turned into numbers for the CPUs this process may use: one worker per
 * CPU with one intra-op thread each (the throughput layout measured in docs/BENCHMARKS.md), three
 * queued requests per worker, and a latency session as wide as the machine. Explicit values win. Pure.
 */
import type { CpuBudget } from './cpus.cjs';
import type { ParsedConfig, PoolConfig, PoolSizing } from './schema.js';

/** Admission queue per worker when maxQueue is auto: enough to keep workers fed, little added latency. */
export const QUEUE_PER_WORKER = 3;

/** libuv starts 4 threads unless UV_THREADPOOL_SIZE says otherwise; the launcher raises it to the CPUs. */
export const uvThreadpoolSize = (env: NodeJS.ProcessEnv): number => Number(env.UV_THREADPOOL_SIZE) || 4;

export function sizePool(
  pool: ParsedConfig['pool'],
  budget: CpuBudget,
  uvThreads: number,
): { pool: PoolConfig; sizing: PoolSizing } {
  const cpus = pool.cpus === 'auto' ? budget.cpus : pool.cpus;
  const workers = pool.workers === 'auto' ? Math.max(1, Math.floor(cpus / pool.intraOpThreads)) : pool.workers;
  const latencyThreads = pool.latencyThreads === 'auto' ? (cpus > pool.intraOpThreads ? cpus : 0) : pool.latencyThreads;
  const maxQueue = pool.maxQueue === 'auto' ? QUEUE_PER_WORKER * workers : pool.maxQueue;
  const explicit = (['cpus', 'workers', 'latencyThreads', 'maxQueue'] as const).filter((k) => pool[k] !== 'auto');
  return {
    pool: { ...pool, cpus, workers, latencyThreads, maxQueue },
    sizing: { budget: pool.cpus === 'auto' ? budget : { ...budget, cpus }, explicit, uvThreadpoolSize: uvThreads },
  };
}

/** One line for the start-up log: what was chosen and why. */
export function describeSizing(pool: PoolConfig, s: PoolSizing): string {
  const b = s.budget;
  const why = s.explicit.includes('cpus')
    ? `pool.cpus ${pool.cpus}`
    : b.source === 'cgroup quota'
      ? `cgroup CPU quota ${b.quota} of ${b.affinity} CPUs`
      : `${b.affinity} CPUs${b.quota !== null ? ` (quota ${b.quota})` : ''}`;
  const given = s.explicit.filter((k) => k !== 'cpus');
  return (
    `sized for ${pool.cpus} CPU${pool.cpus === 1 ? '' : 's'} (${why}): ` +
    `${pool.workers} worker${pool.workers === 1 ? '' : 's'} × ${pool.intraOpThreads} intra-op thread, ` +
    `queue ${pool.maxQueue}, latency session ${pool.latencyThreads ? `${pool.latencyThreads} threads` : 'off'}, ` +
    `libuv pool ${s.uvThreadpoolSize}` +
    (given.length ? `; set explicitly: ${given.join(', ')}` : '')
  );
}
