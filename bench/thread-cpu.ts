/**
 * CPU time of each thread of this process, from /proc (Linux): where a request's CPU goes, by kind of
 * thread. Empty elsewhere.
 */
import { readdirSync, readFileSync } from 'node:fs';

export type ThreadKind = 'inference' | 'decode' | 'event loop' | 'other';

export interface ThreadSample {
  name: string;
  /** CPU milliseconds so far, user + system. */
  ms: number;
  nice: number;
}

/** Every thread of this process by thread id. */
export function threadCpu(): Map<number, ThreadSample> {
  const out = new Map<number, ThreadSample>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  const tick = 1000 / 100; // USER_HZ is 100 on every Linux we run on
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { name, ms: (Number(f[11]) + Number(f[12])) * tick, nice: Number(f[16]) });
    } catch {
      // the thread ended while we looked
    }
  }
  return out;
}

/**
 * CPU ms spent between two snapshots, by kind: `inference` = threads at the pool's nice value (its
 * workers and the ONNX Runtime threads they start; nothing else runs there), `decode` = libvips'
 * threads, `event loop` = the main thread, `other` = the rest (libuv's pool, V8's GC and compiler).
 */
export function cpuByKind(before: Map<number, ThreadSample>, after: Map<number, ThreadSample>, workerNice: number): Record<ThreadKind, number> {
  const out: Record<ThreadKind, number> = { inference: 0, decode: 0, 'event loop': 0, other: 0 };
  for (const [tid, t] of after) {
    const ms = t.ms - (before.get(tid)?.ms ?? 0);
    const kind: ThreadKind = tid !== process.pid && t.nice === workerNice ? 'inference' : tid === process.pid ? 'event loop' : t.name.startsWith('libvips') ? 'decode' : 'other';
    out[kind] += ms;
  }
  return out;
}
