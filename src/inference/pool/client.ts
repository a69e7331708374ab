/**
 * One inference worker thread seen from the main thread: request ids mapped to resolvers; a dead worker
 * rejects everything pending at once and refuses new requests.
 */
import { Worker } from 'node:worker_threads';
import { SightlineError } from '../../errors.js';
import type { ThreadPriority } from '../worker/priority.js';
import type { FromWorker, ToWorker, WorkerReplies } from './messages.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;

const WORKER_URL = new URL('../worker/entry.js', import.meta.url);

export class WorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private alive = true;
  private closing = false;
  readonly ready: Promise<void>;
  /** The worker thread's kernel id and nice value, once ready. */
  priority: ThreadPriority | null = null;

  constructor(
    readonly index: number,
    onExit: (client: WorkerClient, code: number, expected: boolean) => void,
    /** Nice value for the worker thread (and the ONNX Runtime threads it starts); 0 leaves it. */
    nice = 0,
  ) {
    this.worker = new Worker(WORKER_URL, { name: `sightline-inference-${index}`, workerData: { nice } });
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise<void>((res, rej) => ((markReady = res), (failReady = rej)));
    this.worker.on('message', (msg: FromWorker) => {
      if (msg.type === 'ready') {
        this.priority = msg.priority;
        return markReady();
      }
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(SightlineError.fromJSON(msg.error));
    });
    this.worker.on('error', (e) => failReady(e));
    this.worker.once('exit', (code) => {
      this.alive = false;
      const err = new SightlineError('NOT_READY', `inference worker ${index} exited with code ${code}`);
      failReady(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      onExit(this, code, this.closing);
    });
  }

  get isAlive(): boolean {
    return this.alive;
  }

  request<M extends WithoutId<ToWorker>>(msg: M, transfer: ArrayBuffer[] = []): Promise<WorkerReplies[M['type']]> {
    if (!this.alive)
      return Promise.reject(new SightlineError('NOT_READY', `inference worker ${this.index} is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ ...msg, id } as ToWorker, transfer);
    });
  }

  async terminate(): Promise<void> {
    this.closing = true;
    if (this.alive) await this.worker.terminate();
  }
}
