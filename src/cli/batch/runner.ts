/**
 * Runs images through a Detector with a bounded number of calls in flight, keeping the server's
 * admission limits. What each answer means:
 * - RESOURCE_EXHAUSTED with a retry-after-ms trailer (the server is busy): wait that long and send again,
 *   up to `maxBusyWaitMs` of waiting per image, then that image fails;
 * - RESOURCE_EXHAUSTED without one (grpc-js refusing a message over grpc.maxReceiveMessageBytes): that
 *   image fails, as too large;
 * - UNAVAILABLE: retried with back-off; `unavailableRetries` in a row for one image stop the whole run;
 * - NOT_FOUND, UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED would be the same for every image:
 *   the first stops the whole run (runBatch throws it);
 * - anything else (INVALID_ARGUMENT for a corrupt image, DEADLINE_EXCEEDED) fails that image.
 * When `signal` fires (Ctrl-C), waits end and calls in flight are cancelled: their images are left for a
 * rerun, the answers already written stay.
 */
import { status, type ServiceError } from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DetectResponse } from '../../generated/sightline/v1/detector.js';
import { describeError } from '../errors.js';

export interface Failure {
  image: string;
  reason: string;
}

export interface BatchStats {
  done: number;
  failed: Failure[];
  /** Calls sent again after RESOURCE_EXHAUSTED: the server was busy. */
  busyRetries: number;
  /** Calls sent again after UNAVAILABLE: the server could not be reached for a moment. */
  unavailableRetries: number;
  detectionsPerClass: Map<string, number>;
  seconds: number;
}

export interface RunnerOptions {
  images: readonly string[];
  concurrency: number;
  /** One call; `signal` cancels it. */
  call: (image: Buffer, signal: AbortSignal) => Promise<DetectResponse>;
  /** Called once per answered image, in completion order (the journal, annotations); a throw stops the run. */
  onResult: (image: string, bytes: Buffer, res: DetectResponse) => Promise<void> | void;
  onProgress?: (stats: BatchStats) => void;
  /** Stop: no new calls, no more waiting, calls in flight cancelled. */
  signal?: AbortSignal;
  /** Longest total wait of one image for a busy server before it fails. */
  maxBusyWaitMs: number;
  /** UNAVAILABLE answers in a row for one image that are retried; one more stops the run. */
  unavailableRetries: number;
  /** Longest wait between two tries after UNAVAILABLE. */
  maxBackoffMs?: number;
}

/** Answers that would be the same for every image: no use going on. */
const RUN_STOPPERS = new Set([
  status.NOT_FOUND,
  status.UNAUTHENTICATED,
  status.PERMISSION_DENIED,
  status.UNIMPLEMENTED,
]);

/** When the server has not said how long to wait. */
const DEFAULT_RETRY_AFTER_MS = 100;
const FIRST_BACKOFF_MS = 250;

const seconds = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

export async function runBatch(o: RunnerOptions): Promise<BatchStats> {
  const t0 = performance.now();
  const stats: BatchStats = {
    done: 0,
    failed: [],
    busyRetries: 0,
    unavailableRetries: 0,
    detectionsPerClass: new Map(),
    seconds: 0,
  };
  const maxBackoff = o.maxBackoffMs ?? 5000;
  const tick = () => ((stats.seconds = (performance.now() - t0) / 1000), o.onProgress?.(stats));
  // Fires on the caller's stop and on an error that ends the run.
  const halt = new AbortController();
  const onStop = () => halt.abort();
  if (o.signal?.aborted) halt.abort();
  o.signal?.addEventListener('abort', onStop, { once: true });
  let fatal: { error: unknown } | null = null;
  const stopRun = (error: unknown) => {
    fatal ??= { error };
    halt.abort();
  };
  const wait = (ms: number) => sleep(ms, undefined, { signal: halt.signal }).catch(() => undefined);
  const fail = (image: string, reason: string): void => {
    stats.failed.push({ image, reason });
  };

  /** One image, sent again while the server is busy (or briefly unavailable). */
  const one = async (path: string) => {
    let bytes: Buffer;
    try {
      bytes = await readFile(path);
    } catch (e) {
      return fail(path, `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    let busyWaited = 0;
    for (let unavailable = 0; !halt.signal.aborted;) {
      let res: DetectResponse;
      try {
        res = await o.call(bytes, halt.signal);
      } catch (e) {
        // Cancelled by a stop: the image is left for a rerun, not failed.
        if (halt.signal.aborted) return;
        const err = e as Partial<ServiceError>;
        if (err.code === status.RESOURCE_EXHAUSTED) {
          const hint = err.metadata?.get('retry-after-ms')[0];
          // No hint: not admission control but grpc-js refusing a message over the server's size limit.
          if (hint === undefined)
            return fail(
              path,
              /larger than max/i.test(err.details ?? '')
                ? `RESOURCE_EXHAUSTED: the image (${bytes.length} bytes) is larger than the server accepts (${err.details}): ` +
                    "shrink it, or raise the server's grpc.maxReceiveMessageBytes"
                : describeError(e),
            );
          const left = o.maxBusyWaitMs - busyWaited;
          if (left < 1)
            return fail(
              path,
              `RESOURCE_EXHAUSTED: the server stayed busy; waited ${seconds(busyWaited)} in all (--max-busy-wait)`,
            );
          // The server's own estimate of when a place frees up, with jitter so waiting calls spread out.
          const ms = Math.min(left, Math.max(10, Number(hint) || DEFAULT_RETRY_AFTER_MS) * (1 + Math.random() * 0.25));
          stats.busyRetries++;
          busyWaited += ms;
          await wait(ms);
          continue;
        }
        if (err.code === status.UNAVAILABLE) {
          if (++unavailable > o.unavailableRetries) return stopRun(e);
          stats.unavailableRetries++;
          await wait(Math.min(maxBackoff, FIRST_BACKOFF_MS * 2 ** (unavailable - 1)));
          continue;
        }
        if (err.code !== undefined && RUN_STOPPERS.has(err.code)) return stopRun(e);
        return fail(path, describeError(e));
      }
      await o.onResult(path, bytes, res);
      stats.done++;
      for (const d of res.detections)
        stats.detectionsPerClass.set(d.label, (stats.detectionsPerClass.get(d.label) ?? 0) + 1);
      return;
    }
  };

  let next = 0;
  const lane = async () => {
    while (next < o.images.length && !halt.signal.aborted) {
      try {
        await one(o.images[next++]!);
      } catch (e) {
        stopRun(e); // writing the result failed (disk full), or it must not be mixed in (checkSameModel)
      }
      tick();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, o.images.length)) }, lane));
  o.signal?.removeEventListener('abort', onStop);
  stats.seconds = (performance.now() - t0) / 1000;
  if (fatal) throw (fatal as { error: unknown }).error;
  return stats;
}
