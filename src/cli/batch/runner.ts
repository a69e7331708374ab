/**
 * Runs images through a Detector with a bounded number of calls in flight, keeping the server's
 * admission limits: a call refused with RESOURCE_EXHAUSTED waits the server's retry-after-ms and is
 * sent again (it is not a failure), UNAVAILABLE is retried a few times with back-off, any other error
 * fails that image with its reason. Stops taking new images when `signal` fires; calls in flight finish.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import type { DetectResponse } from '../../generated/sightline/v1/detector.js';

export interface Failure {
  image: string;
  reason: string;
}

export interface BatchStats {
  done: number;
  failed: Failure[];
  /** Calls sent again after RESOURCE_EXHAUSTED or UNAVAILABLE. */
  retries: number;
  detectionsPerClass: Map<string, number>;
  seconds: number;
}

export interface RunnerOptions {
  images: readonly string[];
  concurrency: number;
  call: (image: Buffer) => Promise<DetectResponse>;
  /** Called once per answered image, in completion order (the journal, annotations). */
  onResult: (image: string, bytes: Buffer, res: DetectResponse) => Promise<void> | void;
  onProgress?: (stats: BatchStats) => void;
  signal?: AbortSignal;
  /** Longest wait between two tries. */
  maxBackoffMs?: number;
}

const UNAVAILABLE_TRIES = 6;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runBatch(o: RunnerOptions): Promise<BatchStats> {
  const t0 = performance.now();
  const stats: BatchStats = { done: 0, failed: [], retries: 0, detectionsPerClass: new Map(), seconds: 0 };
  const maxBackoff = o.maxBackoffMs ?? 5000;
  const tick = () => ((stats.seconds = (performance.now() - t0) / 1000), o.onProgress?.(stats));

  /** One image, retried while the server says it is busy (or briefly unavailable). */
  const one = async (path: string) => {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      stats.failed.push({
        image: path,
        reason: `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      });
      return;
    }
    for (let unavailable = 0; ;) {
      try {
        const res = await o.call(bytes);
        await o.onResult(path, bytes, res);
        stats.done++;
        for (const d of res.detections)
          stats.detectionsPerClass.set(d.label, (stats.detectionsPerClass.get(d.label) ?? 0) + 1);
        return;
      } catch (e) {
        const err = e as Partial<ServiceError>;
        if (err.code === status.RESOURCE_EXHAUSTED) {
          // The server's own estimate of when a place frees up, with jitter so waiting calls spread out.
          const hinted = Number(err.metadata?.get('retry-after-ms')[0] ?? 100);
          stats.retries++;
          await sleep(Math.min(maxBackoff, Math.max(10, hinted)) * (1 + Math.random() * 0.5));
          continue;
        }
        if (err.code === status.UNAVAILABLE && ++unavailable < UNAVAILABLE_TRIES) {
          stats.retries++;
          await sleep(Math.min(maxBackoff, 200 * 2 ** unavailable));
          continue;
        }
        stats.failed.push({ image: path, reason: err.details ?? (e as Error).message });
        return;
      }
    }
  };

  let next = 0;
  const lane = async () => {
    while (next < o.images.length && !o.signal?.aborted) {
      await one(o.images[next++]!);
      tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, o.images.length)) }, lane));
  stats.seconds = (performance.now() - t0) / 1000;
  return stats;
}
