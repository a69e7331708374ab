/**
 * One Detect stream (video frames): at most `maxInFlight` frames processed at once, responses in frame
 * order, and a drop policy for frames that arrive faster than that. Knows nothing of gRPC: the
 * transport gives it a sink (write, pause/resume input, end).
 */
import { SightlineError } from '../errors.js';
import type { DetectInput, DetectResult, DetectService } from './detect.js';

export type DropPolicy = 'block' | 'latest';

export interface StreamSettings {
  policy: DropPolicy;
  maxInFlight: number;
}

export type StreamItem = { kind: 'result'; result: DetectResult } | { kind: 'dropped'; frameId: bigint };

export interface StreamSink {
  /** Sends one response; false means the peer is not reading fast enough (wait for onWritable()). */
  write(item: StreamItem): boolean;
  pauseInput(): void;
  resumeInput(): void;
  /** Ends the stream: OK without an error, with the error's status otherwise. Called once. */
  end(error?: unknown): void;
}

type Slot = StreamItem | { kind: 'error'; error: unknown; frameId: bigint };

/** A frame's own error names the frame, so a client can tell which one was bad. */
function withFrame(e: unknown, frameId: bigint): unknown {
  return e instanceof SightlineError && e.code === 'INVALID_INPUT'
    ? new SightlineError(e.code, `frame_id ${frameId}: ${e.message}`, e.fields)
    : e;
}

export class StreamSession {
  private nextSeq = 0;
  private nextToEmit = 0;
  private inFlight = 0;
  /** Frames received but not started (block: until a slot frees; latest: only the newest one). */
  private readonly waiting: { seq: number; input: DetectInput }[] = [];
  /** Finished frames waiting for their turn to be written. */
  private readonly done = new Map<number, Slot>();
  private inputEnded = false;
  private draining = false;
  private writeBlocked = false;
  private paused = false;
  private ended = false;

  constructor(
    private readonly detect: DetectService,
    readonly settings: StreamSettings,
    private readonly signal: AbortSignal,
    private readonly sink: StreamSink,
    private readonly onOutcome: (outcome: 'delivered' | 'dropped') => void = () => undefined,
  ) {
    // A cancelled client releases everything at once: queued frames leave the pool (their signal fired).
    signal.addEventListener('abort', () => this.finish(), { once: true });
  }

  /** A frame arrived from the client. */
  push(input: DetectInput): void {
    if (this.ended) return;
    const seq = this.nextSeq++;
    if (this.inFlight < this.settings.maxInFlight && this.waiting.length === 0) return this.start(seq, input);
    this.waiting.push({ seq, input });
    if (this.settings.policy === 'latest') {
      // Keep the newest frame only; older waiting frames are answered as dropped, in order.
      while (this.waiting.length > 1) {
        const old = this.waiting.shift()!;
        this.complete(old.seq, { kind: 'dropped', frameId: old.input.frameId }, true);
      }
    } else {
      this.setPaused(true);
    }
  }

  /** A frame the transport could not turn into a request: its error ends the stream in order, after the frames before it, like a failed detection. */
  reject(frameId: bigint, error: unknown): void {
    if (this.ended) return;
    this.done.set(this.nextSeq++, { kind: 'error', error, frameId });
    this.flush();
  }

  /** The client half-closed: finish what was received, then end with OK. */
  endInput(): void {
    this.inputEnded = true;
    this.maybeEnd();
  }

  /** Server shutdown: stop reading, answer what was received, then end with UNAVAILABLE. */
  drain(): void {
    this.draining = true;
    this.setPaused(true);
    this.maybeEnd();
  }

  /** The transport can take writes again. */
  onWritable(): void {
    this.writeBlocked = false;
    this.flush();
    this.pump();
  }

  private start(seq: number, input: DetectInput): void {
    this.inFlight++;
    this.detect.detect(input, this.signal, { stream: true }).then(
      (result) => this.complete(seq, { kind: 'result', result }),
      (error: unknown) => this.complete(seq, { kind: 'error', error, frameId: input.frameId }),
    );
  }

  private complete(seq: number, slot: Slot, wasWaiting = false): void {
    if (!wasWaiting) this.inFlight--;
    if (this.ended) return;
    this.done.set(seq, slot);
    this.flush();
    this.pump();
  }

  private flush(): void {
    while (!this.ended && !this.writeBlocked && this.done.has(this.nextToEmit)) {
      const slot = this.done.get(this.nextToEmit)!;
      this.done.delete(this.nextToEmit++);
      if (slot.kind === 'error') return this.finish(withFrame(slot.error, slot.frameId));
      this.onOutcome(slot.kind === 'dropped' ? 'dropped' : 'delivered');
      if (!this.sink.write(slot)) this.writeBlocked = true;
    }
    this.maybeEnd();
  }

  /** Starts waiting frames while slots are free; reads more input when nothing holds it back. */
  private pump(): void {
    while (!this.ended && this.inFlight < this.settings.maxInFlight && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      this.start(w.seq, w.input);
    }
    // A slow reader holds input back too, so the server never buffers results without bound.
    const hold =
      this.draining ||
      this.writeBlocked ||
      this.done.size >= this.settings.maxInFlight * 2 ||
      (this.settings.policy === 'block' && this.inFlight >= this.settings.maxInFlight);
    this.setPaused(hold);
    this.maybeEnd();
  }

  private setPaused(p: boolean): void {
    if (p === this.paused || this.ended) return;
    this.paused = p;
    if (p) this.sink.pauseInput();
    else this.sink.resumeInput();
  }

  private maybeEnd(): void {
    if (this.ended || this.inFlight > 0 || this.waiting.length > 0 || this.done.size > 0) return;
    if (this.draining)
      this.finish(new SightlineError('NOT_READY', 'the server is shutting down; reconnect to continue the stream'));
    else if (this.inputEnded) this.finish();
  }

  private finish(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.waiting.length = 0;
    this.done.clear();
    if (!this.signal.aborted) this.sink.end(error);
  }
}
