/**
 * An inference replica's copy of the registry's token digests: fetched at start, every
 * `intervalMs` (so a revocation arrives within it), and on demand when a caller presents a token
 * the copy does not know (a token created since the last sync works on the caller's next retry,
 * instead of after up to one interval of refusals that count toward the failed-auth lockout).
 */
import type { TokenDigest } from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';

export interface TokenSyncOptions {
  fetch: () => Promise<TokenDigest[]>;
  apply: (digests: TokenDigest[]) => void;
  intervalMs: number;
  /**
   * Least time between the starts of two syncs asked for on demand: unknown tokens sprayed at a
   * replica cost the registry at most one SyncTokens call per gap.
   */
  minGapMs?: number;
  log: Logger;
}

export class TokenSync {
  private inFlight: Promise<void> | null = null;
  private lastStart = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  private trailing: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: TokenSyncOptions) {}

  /** First sync (a failure is logged; the copy stays empty), then the periodic ones. */
  async start(): Promise<void> {
    await this.sync();
    if (this.stopped) return;
    this.timer = setInterval(() => void this.sync(), this.o.intervalMs);
    this.timer.unref();
  }

  /**
   * Asks for a sync soon: now if none ran in the last `minGapMs`, else once at the end of the gap.
   * Never waits; the call that found the token unknown is refused either way.
   */
  request(): void {
    if (this.stopped || this.inFlight || this.trailing) return;
    const wait = this.lastStart + (this.o.minGapMs ?? 1000) - Date.now();
    if (wait <= 0) {
      void this.sync();
      return;
    }
    this.trailing = setTimeout(() => {
      this.trailing = null;
      void this.sync();
    }, wait);
    this.trailing.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.trailing) clearTimeout(this.trailing);
    this.timer = this.trailing = null;
  }

  /** One SyncTokens call at a time; a call while one runs shares it. */
  private sync(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.inFlight) return this.inFlight;
    this.lastStart = Date.now();
    const p: Promise<void> = Promise.resolve()
      .then(() => this.o.fetch())
      .then(
        (d) => this.o.apply(d),
        (e: Error) =>
          this.o.log.warn(
            { event: 'token_sync_failed', err: e.message },
            'token sync with the registry failed; keeping the last copy',
          ),
      )
      .finally(() => {
        if (this.inFlight === p) this.inFlight = null;
      });
    this.inFlight = p;
    return p;
  }
}
