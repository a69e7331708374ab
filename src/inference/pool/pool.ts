/**
 * The inference pool: N worker threads, each holding one ONNX Runtime session per loaded model version.
 * Admission is bounded: a request takes a ticket before any work is spent on it (decoding included),
 * and at most `workers + maxQueue` tickets are out at once; beyond that admit() refuses at once with
 * OVERLOADED and a retry estimate. Work goes FIFO to the next free worker, a request whose signal has
 * fired is dropped without running, and a worker that dies is replaced and reloaded.
 *
 * The first worker may also hold a latency session per model (LoadOptions.latencyThreads): a request
 * that finds every worker idle and nobody waiting runs there, on all the cores the pool would otherwise
 * leave idle; under load every request runs on the one-thread sessions that give the most throughput.
 *
 * Background work (runBackground: shadow runs of a candidate version) uses idle capacity only: it takes
 * no admission ticket, starts only while no admitted request is waiting and no request runs on the
 * latency session, never takes the last idle worker (a live request arriving during a background run
 * finds a worker free; a single-worker pool is the exception, or it could never run one), so never on
 * more than workers − 1 workers at once, last worker first, and always on a one-thread session. It waits in a bounded lane of its own; a job
 * that finds the lane full, or waits past its deadline, is dropped (OVERLOADED with fields.dropped).
 */
import { SightlineError } from '../../errors.js';
import type { ThreadPriority } from '../worker/priority.js';
import { transferOf } from '../preprocess/source.js';
import { WorkerClient } from './client.js';
import type { LoadOptions, ModelInfo, RunInput, RunOutput, TensorInput, TensorRunOutput } from './messages.js';

export interface PoolOptions {
  workers: number;
  maxQueue: number;
  /** Nice value of the worker threads (Linux), so the event loop gets the CPU first; 0 leaves it. */
  workerNice?: number;
  /** Called on worker crashes and replacements. */
  onEvent?: (event: PoolEvent) => void;
  /** Background jobs waiting for idle capacity at most; beyond it a new one is dropped (default 0: no background lane). */
  maxBackground?: number;
}

export type PoolEvent =
  | { type: 'worker-exit'; worker: number; code: number }
  | { type: 'worker-restarted'; worker: number }
  | { type: 'worker-reload-failed'; worker: number; key: string; error: Error };

export interface PoolStats {
  workers: number;
  busyWorkers: number;
  /** Requests admitted and not yet running on a worker (being decoded, or waiting in the queue). */
  admitted: number;
  /** Prepared requests waiting for a worker. */
  queued: number;
  /** Inferences started since the pool was created (a request dropped before running is not counted). */
  runsStarted: number;
  runsRejected: number;
  /** Background jobs waiting for idle capacity, and running. */
  backgroundQueued: number;
  backgroundRunning: number;
}

export interface RunResult extends RunOutput {
  queueMs: number;
}

export interface TensorRunResult extends TensorRunOutput {
  queueMs: number;
}

/**
 * A place in the pool's admission budget, taken before a request is decoded and given back when a
 * worker starts it (or when the request ends early). release() is idempotent.
 */
export interface Ticket {
  release(): void;
}

/** Queued work: an image (run()) or a raw tensor (infer()), admitted, queued and dropped alike. */
interface Job {
  ticket: Ticket;
  key: string;
  signal: AbortSignal;
  enqueuedAt: number;
  /** Sends the job to a worker; `latency`: the worker may use its latency session (images only). */
  send: (w: WorkerClient, latency: boolean) => Promise<unknown>;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  onAbort: () => void;
}

/** Why background work was dropped: the lane was full, or no idle capacity came before its deadline. */
export type BackgroundDrop = 'busy' | 'expired';

/** A background job: no ticket, a deadline for finding idle capacity. */
interface BackgroundJob extends Omit<Job, 'ticket' | 'signal' | 'onAbort'> {
  timer: NodeJS.Timeout;
}

/** Work a specific worker must do before taking shared jobs (loads, unloads). */
interface ControlTask {
  run: (w: WorkerClient) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

interface Slot {
  client: WorkerClient;
  busy: boolean;
  control: ControlTask[];
}

interface LoadedModel {
  model: Uint8Array;
  options: LoadOptions;
  info: ModelInfo;
}

export class InferencePool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly background: BackgroundJob[] = [];
  private backgroundRunning = 0;
  /** A request runs on the latency session (all cores): background work waits for it. */
  private wideRunning = false;
  private readonly models = new Map<string, LoadedModel>();
  private closed = false;
  private closing: Promise<void> | null = null;
  private closeDeadline = Infinity;
  private admitted = 0;
  private probes = 0;
  private runsStarted = 0;
  private runsRejected = 0;
  /** Moving average of one run's duration, for the retry hint given to refused callers. */
  private avgRunMs = 50;

  private constructor(private readonly opts: PoolOptions) {}

  /** Starts every worker and waits until each has said it is ready. */
  static async create(opts: PoolOptions): Promise<InferencePool> {
    const pool = new InferencePool(opts);
    for (let i = 0; i < opts.workers; i++) pool.slots.push({ client: pool.spawn(i), busy: false, control: [] });
    await Promise.all(pool.slots.map((s) => s.client.ready));
    return pool;
  }

  private spawn(index: number): WorkerClient {
    return new WorkerClient(
      index,
      (client, code, expected) => {
        if (expected || this.closed) return;
        this.opts.onEvent?.({ type: 'worker-exit', worker: index, code });
        void this.replace(client);
      },
      this.opts.workerNice ?? 0,
    );
  }

  /** The latency session lives on the first worker only. */
  private static optionsFor(slotIndex: number, options: LoadOptions): LoadOptions {
    return slotIndex === 0 ? options : { ...options, latencyThreads: 0 };
  }

  /** Replaces a dead worker and reloads every model on it before it takes work again. */
  private async replace(dead: WorkerClient): Promise<void> {
    const slot = this.slots.find((s) => s.client === dead);
    if (!slot) return;
    slot.client = this.spawn(dead.index);
    slot.busy = true;
    try {
      await slot.client.ready;
      for (const [key, m] of this.models) {
        try {
          await slot.client.request({
            type: 'load',
            key,
            model: m.model,
            options: InferencePool.optionsFor(dead.index, m.options),
          });
        } catch (e) {
          this.opts.onEvent?.({ type: 'worker-reload-failed', worker: dead.index, key, error: e as Error });
        }
      }
      this.opts.onEvent?.({ type: 'worker-restarted', worker: dead.index });
    } finally {
      slot.busy = false;
      this.dispatch();
    }
  }

  /**
   * Loads a model on every worker, then warms it up on every worker, one worker at a time so the
   * others keep serving. Resolves with the model's info once every worker is warm; on failure unloads
   * it everywhere. `onPhase('warming')` is called between the two phases.
   */
  async load(
    key: string,
    model: Uint8Array,
    options: LoadOptions,
    onPhase?: (phase: 'warming') => void,
  ): Promise<ModelInfo> {
    this.assertOpen();
    let info: ModelInfo | undefined;
    try {
      for (const slot of this.slots) {
        const opts = { ...InferencePool.optionsFor(slot.client.index, options), warmupRuns: 0 };
        info = await this.onWorker(slot, (w) => w.request({ type: 'load', key, model, options: opts }));
      }
      onPhase?.('warming');
      let warmupMs = 0;
      for (const slot of this.slots) {
        warmupMs = Math.max(
          warmupMs,
          await this.onWorker(slot, (w) => w.request({ type: 'warm', key, runs: options.warmupRuns })),
        );
      }
      info = { ...info!, warmupMs };
    } catch (e) {
      await this.unload(key).catch(() => undefined);
      throw e;
    }
    this.models.set(key, { model, options, info });
    return info;
  }

  /**
   * Loads a model on one worker only, runs it `options.warmupRuns` times and unloads it: the check an
   * upload must pass before it is accepted. Returns what the model is.
   */
  async probe(model: Uint8Array, options: LoadOptions): Promise<ModelInfo> {
    this.assertOpen();
    const key = `probe:${++this.probes}`;
    const slot = this.slots[this.probes % this.slots.length]!;
    return this.onWorker(slot, async (w) => {
      try {
        return await w.request({ type: 'load', key, model, options: { ...options, latencyThreads: 0 } });
      } finally {
        await w.request({ type: 'unload', key }).catch(() => undefined);
      }
    });
  }

  /** Releases a model's sessions on every worker. Requests already running on it finish first. */
  async unload(key: string): Promise<void> {
    this.models.delete(key);
    await Promise.all(this.slots.map((s) => this.onWorker(s, (w) => w.request({ type: 'unload', key }))));
  }

  info(key: string): ModelInfo | undefined {
    return this.models.get(key)?.info;
  }

  /**
   * Takes a place in the admission budget (workers + maxQueue), or refuses at once with OVERLOADED and
   * a `retryAfterMs` estimate. `bypassLimit` is for callers bounded elsewhere (a stream's in-flight
   * frames): they are counted but never refused.
   */
  admit(opts: { bypassLimit?: boolean } = {}): Ticket {
    this.assertOpen();
    const full = opts.bypassLimit ? null : this.refusal();
    if (full) {
      this.runsRejected++;
      throw full;
    }
    this.admitted++;
    let held = true;
    return {
      release: () => {
        if (held) {
          held = false;
          this.admitted--;
          // Background work may have waited for this one (a request that ended before reaching the
          // queue). Not re-entrantly: dispatch() itself releases tickets as workers take jobs.
          if (this.admitted === 0 && this.background.length > 0) queueMicrotask(() => this.dispatch());
        }
      },
    };
  }

  /**
   * The error admit() would throw now, or null. Lets the transport refuse a call from its headers,
   * before the image is even received (a refusal then costs almost nothing).
   */
  refusal(): SightlineError | null {
    const limit = this.slots.length + this.opts.maxQueue;
    if (this.admitted < limit) return null;
    const waiting = this.admitted - this.slots.length + 1;
    const retryAfterMs = Math.max(10, Math.ceil((waiting * this.avgRunMs) / this.slots.length));
    return new SightlineError(
      'OVERLOADED',
      `server is at capacity: ${this.admitted} requests admitted, limit ${limit} ` +
        `(${this.slots.length} workers + queue ${this.opts.maxQueue}); ` +
        `retry in about ${retryAfterMs} ms`,
      {
        retryAfterMs,
      },
    );
  }

  /** Counts a call refused before admission (from its headers). */
  countRefused(): void {
    this.runsRejected++;
  }

  /**
   * Runs one prepared image, under `ticket` (from admit()) or a ticket taken now. Rejects with the
   * signal's reason when it fires before a worker takes the job: such a job never reaches ONNX Runtime.
   */
  run(key: string, input: RunInput, signal: AbortSignal, ticket?: Ticket): Promise<RunResult> {
    const transfer = [transferOf(input.source)];
    return this.enqueue(key, signal, ticket, (w, latency) =>
      w.request({ type: 'run', key, input: { ...input, wide: latency } }, transfer),
    );
  }

  /**
   * Runs the caller's own input tensor through the model and returns its raw outputs (no decoding, no
   * NMS), under `ticket` (from admit()) or a ticket taken now. Queued with the image jobs, in order.
   */
  infer(key: string, tensor: TensorInput, signal: AbortSignal, ticket?: Ticket): Promise<TensorRunResult> {
    const { data } = tensor;
    const transfer =
      data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? [data.buffer as ArrayBuffer] : [];
    return this.enqueue(key, signal, ticket, (w) => w.request({ type: 'infer', key, input: tensor }, transfer));
  }

  /**
   * Runs one prepared image on idle capacity only (see the file comment): rejects at once with
   * OVERLOADED { dropped: 'busy' } when the background lane is full, and with { dropped: 'expired' }
   * when no worker became free for it within `maxWaitMs`.
   */
  runBackground(key: string, input: RunInput, maxWaitMs: number): Promise<RunResult> {
    if (this.closed) return Promise.reject(new SightlineError('NOT_READY', 'the inference pool is shutting down'));
    const refused = this.backgroundRefusal();
    if (refused) return Promise.reject(dropped(refused, `background lane full (${this.background.length} waiting)`));
    if (!this.models.has(key)) return Promise.reject(new SightlineError('PRECONDITION', `model ${key} is not loaded`));
    const transfer = [transferOf(input.source)];
    return new Promise((resolve, reject) => {
      const job: BackgroundJob = {
        key,
        enqueuedAt: performance.now(),
        send: (w) => w.request({ type: 'run', key, input: { ...input, wide: false } }, transfer),
        resolve: resolve as (r: unknown) => void,
        reject,
        timer: setTimeout(() => {
          const i = this.background.indexOf(job);
          if (i >= 0) {
            this.background.splice(i, 1);
            reject(dropped('expired', `no idle worker within ${maxWaitMs} ms`));
          }
        }, maxWaitMs),
      };
      job.timer.unref();
      this.background.push(job);
      this.dispatch();
    });
  }

  /** Why a background job would be dropped now ('busy': the lane is full), or null. Lets callers skip preparing one. */
  backgroundRefusal(): BackgroundDrop | null {
    return this.background.length >= (this.opts.maxBackground ?? 0) ? 'busy' : null;
  }

  /**
   * Queues one job under `ticket` (or a ticket taken now). Rejects with the signal's reason when it
   * fires before a worker takes the job: such a job never reaches ONNX Runtime.
   */
  private enqueue<O extends object>(
    key: string,
    signal: AbortSignal,
    ticket: Ticket | undefined,
    send: (w: WorkerClient, latency: boolean) => Promise<O>,
  ): Promise<O & { queueMs: number }> {
    if (this.closed) return Promise.reject(new SightlineError('NOT_READY', 'the inference pool is shutting down'));
    let t: Ticket;
    try {
      t = ticket ?? this.admit();
    } catch (e) {
      return Promise.reject(e);
    }
    const refuse = (e: unknown) => {
      t.release();
      return Promise.reject(e);
    };
    if (signal.aborted) return refuse(signal.reason);
    if (!this.models.has(key)) return refuse(new SightlineError('PRECONDITION', `model ${key} is not loaded`));
    return new Promise((resolve, reject) => {
      const job: Job = {
        ticket: t,
        key,
        signal,
        enqueuedAt: performance.now(),
        send,
        resolve: resolve as (r: unknown) => void,
        reject,
        onAbort: () => {
          const i = this.queue.indexOf(job);
          if (i >= 0) {
            this.queue.splice(i, 1);
            t.release();
            reject(signal.reason);
          }
        },
      };
      signal.addEventListener('abort', job.onAbort, { once: true });
      this.queue.push(job);
      this.dispatch();
    });
  }

  private onWorker<T>(slot: Slot, run: (w: WorkerClient) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      slot.control.push({ run, resolve: resolve as (v: unknown) => void, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.busy || !slot.client.isAlive) continue;
      const task = slot.control.shift();
      if (task) {
        slot.busy = true;
        task
          .run(slot.client)
          .then(task.resolve, task.reject)
          .finally(() => this.release(slot));
        continue;
      }
      const job = this.nextJob();
      if (!job) continue;
      slot.busy = true;
      this.start(slot, job, slot === this.slots[0] && this.alone() && this.hasLatencySession(job.key));
    }
    this.dispatchBackground();
  }

  /** Background jobs on idle workers, last worker first, while no live work waits (file comment). */
  private dispatchBackground(): void {
    const free = (s: Slot) => !s.busy && s.client.isAlive && s.control.length === 0;
    // Workers that must stay idle for live arrivals: one, unless there is only one.
    const reserve = this.slots.length > 1 ? 1 : 0;
    for (let k = this.slots.length - 1; k >= 0 && this.background.length > 0; k--) {
      if (this.queue.length > 0 || this.admitted > 0 || this.wideRunning) return;
      if (this.slots.filter(free).length <= reserve) return;
      const slot = this.slots[k]!;
      if (!free(slot)) continue;
      const job = this.background.shift()!;
      clearTimeout(job.timer);
      slot.busy = true;
      this.backgroundRunning++;
      const queueMs = performance.now() - job.enqueuedAt;
      job
        .send(slot.client, false)
        .then((out) => job.resolve({ ...(out as object), queueMs }), job.reject)
        .finally(() => {
          this.backgroundRunning--;
          this.release(slot);
        });
    }
  }

  /** True when the first worker's job is the only work in the pool: no other worker busy, nobody waiting. */
  private alone(): boolean {
    return this.queue.length === 0 && this.slots.every((s, i) => i === 0 || !s.busy);
  }

  private hasLatencySession(key: string): boolean {
    const o = this.models.get(key)?.options;
    return !!o && (o.latencyThreads ?? 0) > o.intraOpThreads;
  }

  /** Takes the oldest job whose caller is still waiting; expired ones are rejected without running. */
  private nextJob(): Job | undefined {
    for (let job = this.queue.shift(); job; job = this.queue.shift()) {
      job.signal.removeEventListener('abort', job.onAbort);
      job.ticket.release();
      if (!job.signal.aborted) return job;
      job.reject(job.signal.reason);
    }
    return undefined;
  }

  private start(slot: Slot, job: Job, latency: boolean): void {
    const queueMs = performance.now() - job.enqueuedAt;
    this.runsStarted++;
    const t0 = performance.now();
    if (latency) this.wideRunning = true;
    job
      .send(slot.client, latency)
      .then((out) => {
        this.avgRunMs += 0.1 * (performance.now() - t0 - this.avgRunMs);
        job.resolve({ ...(out as object), queueMs });
      }, job.reject)
      .finally(() => {
        if (latency) this.wideRunning = false;
        this.release(slot);
      });
  }

  private release(slot: Slot): void {
    slot.busy = false;
    this.dispatch();
  }

  stats(): PoolStats {
    return {
      workers: this.slots.length,
      busyWorkers: this.slots.filter((s) => s.busy).length,
      admitted: this.admitted,
      queued: this.queue.length,
      runsStarted: this.runsStarted,
      runsRejected: this.runsRejected,
      backgroundQueued: this.background.length,
      backgroundRunning: this.backgroundRunning,
    };
  }

  /** Each live worker thread's kernel id and nice value (null until it is ready). */
  threadPriorities(): (ThreadPriority | null)[] {
    return this.slots.map((s) => s.client.priority);
  }

  private assertOpen(): void {
    if (this.closed) throw new SightlineError('NOT_READY', 'the inference pool is shutting down');
  }

  /**
   * Rejects queued work, lets running inferences finish (for at most `waitMs`), then stops the
   * workers. Calling it again returns the same promise, with the earlier of the two deadlines.
   * Never let the process exit while a worker is inside ONNX Runtime: its native teardown then
   * aborts the process (SIGABRT) instead of exiting with the code asked for.
   */
  close(waitMs = 5000): Promise<void> {
    const deadline = Date.now() + waitMs;
    this.closeDeadline = Math.min(this.closeDeadline, deadline);
    return (this.closing ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      job.signal.removeEventListener('abort', job.onAbort);
      job.ticket.release();
      job.reject(new SightlineError('NOT_READY', 'the inference pool is shutting down'));
    }
    for (const job of this.background.splice(0)) {
      clearTimeout(job.timer);
      job.reject(new SightlineError('NOT_READY', 'the inference pool is shutting down'));
    }
    while (this.slots.some((s) => s.busy) && Date.now() < this.closeDeadline)
      await new Promise((r) => setTimeout(r, 10));
    await Promise.all(this.slots.map((s) => s.client.terminate()));
  }
}

const dropped = (reason: BackgroundDrop, why: string) =>
  new SightlineError('OVERLOADED', `background work dropped: ${why}`, { dropped: reason });
