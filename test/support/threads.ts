/**
 * The threads of this process as the kernel sees them (Linux /proc): name, CPU time and nice value.
 * Empty where /proc is missing. Used by the worker-priority test and the benchmark's CPU accounting.
 */
import { readdirSync, readFileSync } from 'node:fs';

export interface ThreadStat {
  name: string;
  /** CPU milliseconds so far, user + system. */
  cpuMs: number;
  nice: number;
}

/** USER_HZ, the unit of /proc's CPU times: 100 on every Linux we run on. */
const TICK_MS = 1000 / 100;

/** Every thread of this process, by kernel thread id. */
export function threadStats(): Map<number, ThreadStat> {
  const out = new Map<number, ThreadStat>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      // The name is in parentheses and may contain spaces; fields after it are space-separated.
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { name, cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS, nice: Number(f[16]) });
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}
