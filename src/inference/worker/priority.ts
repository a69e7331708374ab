/**
 * Inference threads yield the CPU to the event loop. On a machine whose cores are all busy with
 * inference and decoding, the main thread (gRPC I/O, admission, health checks, metrics) otherwise
 * waits its turn like any other thread, and its event-loop delay grows with the load (measured with
 * yolox_nano at concurrency 8 on 2 cores: p99 10-17 ms at nice 0, 6-10 ms at nice 10, same throughput).
 * A higher nice value only matters while threads compete; an idle main thread costs inference nothing.
 *
 * Linux only: nice is per thread there, and threads started later by this one (ONNX Runtime's
 * intra-op pool) inherit it. Raising one's own nice value needs no privilege, in containers too.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

export interface ThreadPriority {
  /** Kernel thread id, when it could be read. */
  tid: number | null;
  /** The thread's nice value afterwards. */
  nice: number | null;
  /** Why the requested value was not applied, when it was not. */
  skipped?: string;
}

/** Sets the calling thread's nice value to `nice` unless it is already at least that (0: leaves it). */
export function lowerThreadPriority(nice: number): ThreadPriority {
  let tid: number;
  try {
    // The calling thread's own /proc entry: /proc/<pid>/task/<tid>.
    tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
  } catch {
    return { tid: null, nice: null, skipped: 'per-thread priority needs Linux (/proc/thread-self)' };
  }
  try {
    const current = getPriority(tid);
    if (nice > current) setPriority(tid, nice);
    return { tid, nice: getPriority(tid) };
  } catch (e) {
    return { tid, nice: null, skipped: (e as Error).message };
  }
}
