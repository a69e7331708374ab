/**
 * pool.workerNice: the inference threads, and the ONNX Runtime threads they start, run at a lower
 * priority than the event loop. Read back from /proc, the kernel's own account (Linux only).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { sharedDataOrSkip } from '../../support/data.js';
import { startTestServer } from '../../support/server.js';
import { modelPath } from '../../support/shared.js';
import { threadStats } from '../../support/threads.js';

const linux = existsSync('/proc/thread-self');
const haveData = sharedDataOrSkip('worker priority');

/** nice value of every thread of this process, by thread id. */
const threadNice = (): Map<number, number> => new Map([...threadStats()].map(([tid, t]) => [tid, t.nice]));

test(
  'inference threads and their ONNX Runtime threads run at pool.workerNice; the event loop keeps its priority',
  { skip: !linux ? 'needs Linux /proc' : !haveData },
  async () => {
    const mainNice = threadNice().get(process.pid);
    const before = new Set([...threadNice()].filter(([, n]) => n === 7).map(([t]) => t));
    const srv = await startTestServer({
      models: [{ name: 'yolox', path: modelPath('yolox_nano.onnx') }],
      // Two intra-op threads: ONNX Runtime starts one pool thread per session, from the worker thread.
      pool: { workers: 2, intraOpThreads: 2, warmupRuns: 1, workerNice: 7 },
    });
    try {
      const workers = srv.app.pool.threadPriorities();
      assert.equal(workers.length, 2);
      const nice = threadNice();
      for (const w of workers) {
        assert.ok(w?.tid, 'each worker reports its thread id');
        assert.equal(w.nice, 7);
        assert.equal(nice.get(w.tid), 7, `thread ${w.tid} runs at nice 7 according to /proc`);
      }
      assert.equal(nice.get(process.pid), mainNice, 'the main thread keeps its nice value');
      const atSeven = [...nice].filter(([t, n]) => n === 7 && !before.has(t)).length;
      assert.ok(atSeven >= 4, `2 workers + 2 ONNX Runtime pool threads at nice 7, found ${atSeven} threads`);
    } finally {
      await srv.close();
    }
  },
);

test(
  'workerNice 0 leaves the inference threads at the process priority',
  { skip: !linux ? 'needs Linux /proc' : !haveData },
  async () => {
    const mainNice = threadNice().get(process.pid);
    const srv = await startTestServer({
      models: [{ name: 'yolox', path: modelPath('yolox_nano.onnx') }],
      pool: { workers: 1, warmupRuns: 1, workerNice: 0 },
    });
    try {
      const [w] = srv.app.pool.threadPriorities();
      assert.equal(threadNice().get(w!.tid!), mainNice);
    } finally {
      await srv.close();
    }
  },
);
