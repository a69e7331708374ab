/**
 * How many CPUs this process may use: the scheduler's affinity (os.availableParallelism()), capped by
 * the cgroup CPU quota a container runtime sets (Kubernetes `limits.cpu`, `docker run --cpus`), which
 * Node 20's availableParallelism does not see. The pool, libuv's thread pool and admission are sized
 * from it (config/sizing.ts).
 *
 * CommonJS on purpose: the launcher (cli/launch.cts) must size libuv's pool before any ES module is
 * loaded, because loading one already starts that pool.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

export interface CpuBudget {
  /** CPUs to size for: at least 1. */
  readonly cpus: number;
  /** CPUs the scheduler lets this process run on. */
  readonly affinity: number;
  /** The cgroup quota in CPUs (may be fractional), or null when there is none. */
  readonly quota: number | null;
  /** Where `cpus` came from, for the start-up log. */
  readonly source: 'affinity' | 'cgroup quota';
}

/** cgroup v2 `cpu.max`: "max 100000" (no quota) or "<quota> <period>" in microseconds. */
export function parseCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || quota === 'max') return null;
  const q = Number(quota);
  const p = Number(period ?? 100_000);
  return q > 0 && p > 0 ? q / p : null;
}

/** cgroup v1 `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`. */
export function parseCfs(quotaText: string, periodText: string): number | null {
  const q = Number(quotaText.trim());
  const p = Number(periodText.trim());
  return q > 0 && p > 0 ? q / p : null;
}

type Read = (path: string) => string | null;

const readOrNull: Read = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/**
 * The quota of this process's own cgroup, v2 first then v1. Inside a container the cgroup namespace
 * makes it /sys/fs/cgroup itself; on a host, /proc/self/cgroup names the path.
 */
export function cgroupQuota(read: Read = readOrNull): number | null {
  const self = read('/proc/self/cgroup') ?? '';
  const v2 = /^0::(.*)$/m.exec(self)?.[1]?.trim();
  for (const dir of [v2 && v2 !== '/' ? `/sys/fs/cgroup${v2}` : null, '/sys/fs/cgroup']) {
    const max = dir ? read(`${dir}/cpu.max`) : null;
    if (max !== null) return parseCpuMax(max);
  }
  const v1 = /^\d+:[^:]*\bcpu\b[^:]*:(.*)$/m.exec(self)?.[1]?.trim();
  for (const dir of [
    v1 && v1 !== '/' ? `/sys/fs/cgroup/cpu${v1}` : null,
    '/sys/fs/cgroup/cpu',
    '/sys/fs/cgroup/cpu,cpuacct',
  ]) {
    const q = dir ? read(`${dir}/cpu.cfs_quota_us`) : null;
    const p = dir ? read(`${dir}/cpu.cfs_period_us`) : null;
    if (q !== null && p !== null) return parseCfs(q, p);
  }
  return null;
}

/**
 * A quota of 2.5 CPUs sizes for 2: a CPU-bound thread per partial CPU would only be throttled.
 */
export function cpuBudget(affinity: number = availableParallelism(), quota: number | null = cgroupQuota()): CpuBudget {
  if (quota !== null && quota < affinity)
    return { cpus: Math.max(1, Math.floor(quota + 1e-9)), affinity, quota, source: 'cgroup quota' };
  return { cpus: Math.max(1, affinity), affinity, quota, source: 'affinity' };
}
