/**
 * Progress of `sightline batch` on standard error: a bar with rate and ETA on a terminal; elsewhere
 * (a Kubernetes Job's log, CI) a plain line every `everyMs`, since a bar redrawn in place is unreadable
 * there and silence looks like a hang.
 */
import { Presets, SingleBar } from 'cli-progress';
import type { BatchStats } from './runner.js';

export interface Progress {
  update(stats: BatchStats): void;
  stop(): void;
}

const rateOf = (s: Pick<BatchStats, 'done' | 'seconds'>) => (s.seconds > 0 ? s.done / s.seconds : 0);

function eta(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.round(seconds);
  return s < 60
    ? `${s} s`
    : s < 3600
      ? `${Math.floor(s / 60)} min ${s % 60} s`
      : `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** `batch: 40/128 images (1 failed), 3.1 img/s, ETA 28 s`. */
export function progressLine(s: Pick<BatchStats, 'done' | 'failed' | 'seconds'>, total: number): string {
  const finished = s.done + s.failed.length;
  const rate = rateOf(s);
  const left = rate > 0 ? (total - finished) / rate : Infinity;
  return `batch: ${finished}/${total} images (${s.failed.length} failed), ${rate.toFixed(1)} img/s, ETA ${eta(left)}`;
}

class Bar implements Progress {
  private readonly bar = new SingleBar(
    {
      format: 'batch [{bar}] {value}/{total} | {rate} img/s | ETA {eta_formatted} | {failed} failed',
      hideCursor: true,
      etaBuffer: 50,
      stream: process.stderr,
    },
    Presets.shades_classic,
  );

  constructor(total: number) {
    this.bar.start(total, 0, { rate: '0.0', failed: 0 });
  }

  update(s: BatchStats): void {
    this.bar.update(s.done + s.failed.length, { rate: rateOf(s).toFixed(1), failed: s.failed.length });
  }

  stop(): void {
    this.bar.stop();
  }
}

class Lines implements Progress {
  private last: BatchStats | null = null;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly total: number,
    everyMs: number,
  ) {
    const started = performance.now();
    this.timer = setInterval(() => {
      const { done, failed } = this.last ?? { done: 0, failed: [] };
      // The rate and ETA as of now, not as of the last image (a slow stretch shows as one).
      process.stderr.write(
        progressLine({ done, failed, seconds: (performance.now() - started) / 1000 }, this.total) + '\n',
      );
    }, everyMs);
    this.timer.unref();
  }

  update(s: BatchStats): void {
    this.last = s;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const NONE: Progress = { update: () => undefined, stop: () => undefined };

/** A bar on a terminal, plain lines every `everyMs` elsewhere (0: none); nothing when there is nothing to do. */
export function startProgress(total: number, o: { tty: boolean; everyMs: number }): Progress {
  if (!total) return NONE;
  if (o.tty) return new Bar(total);
  return o.everyMs > 0 ? new Lines(total, o.everyMs) : NONE;
}
