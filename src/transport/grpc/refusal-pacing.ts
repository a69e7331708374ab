/**
 * Pacing for clients that ignore retry-after. A refusal is cheap for the server only if clients wait
 * before sending the call again: one that resends at once makes the server receive its image again
 * and again (hundreds of megabytes a second on a fast network) and takes the CPU from the calls being
 * served. So a connection that sends a call before the retry-after of its previous refusal has passed
 * gets its next refusal only when that retry-after is over (at most maxHoldMs): it waits as long as
 * it was asked to. A first refusal, and every refusal to a client that waits as told, is immediate.
 * Pure bookkeeping; the admission interceptor holds the answer.
 */
export class RefusalPacer {
  /** Per connection (peer address and port): the time its last refusal's retry-after ends. */
  private readonly until = new Map<string, number>();

  constructor(
    private readonly maxHoldMs: number,
    /** Connections remembered at most: beyond it, those whose retry-after ended are forgotten first. */
    private readonly maxPeers = 10_000,
  ) {}

  /** How long to hold this refusal (0: answer now), recording it. */
  hold(peer: string, retryAfterMs: number, now: number): number {
    if (this.maxHoldMs <= 0) return 0;
    const until = this.until.get(peer) ?? 0;
    const wait = until > now ? Math.min(until - now, this.maxHoldMs) : 0;
    this.until.delete(peer); // re-inserted last: the map stays ordered by recency
    this.until.set(peer, now + wait + retryAfterMs);
    if (this.until.size > this.maxPeers) this.forget(now);
    return wait;
  }

  private forget(now: number): void {
    for (const [peer, until] of this.until) {
      if (this.until.size <= this.maxPeers / 2) break;
      if (until <= now || this.until.size > this.maxPeers) this.until.delete(peer);
    }
  }
}
