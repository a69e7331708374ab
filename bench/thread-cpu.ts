/** Where a request's CPU goes, by kind of thread, from two snapshots of this process's threads (Linux). */
import type { ThreadStat } from '../test/support/threads.js';

export type ThreadKind = 'inference' | 'decode' | 'event loop' | 'other';

/**
 * CPU ms spent between two snapshots, by kind: `inference` = threads at the pool's nice value (its
 * workers and the ONNX Runtime threads they start; nothing else runs there), `decode` = libvips'
 * threads, `event loop` = the main thread, `other` = the rest (libuv's pool, V8's GC and compiler).
 */
export function cpuByKind(
  before: Map<number, ThreadStat>,
  after: Map<number, ThreadStat>,
  workerNice: number,
): Record<ThreadKind, number> {
  const out: Record<ThreadKind, number> = { inference: 0, decode: 0, 'event loop': 0, other: 0 };
  for (const [tid, t] of after) {
    const ms = t.cpuMs - (before.get(tid)?.cpuMs ?? 0);
    const kind: ThreadKind =
      tid === process.pid
        ? 'event loop'
        : t.nice === workerNice
          ? 'inference'
          : t.name.startsWith('libvips')
            ? 'decode'
            : 'other';
    out[kind] += ms;
  }
  return out;
}
