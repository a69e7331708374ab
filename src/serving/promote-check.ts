/**
 * The contract of a promote check: what ModelRegistry asks before a pointer moves (or a canary starts),
 * and who asks. Its own module so that checks (gates.ts; role all's load in main.ts) and the registry
 * depend on it, not on each other.
 */

/** Who asks for a change: recorded in the history and the audit log. */
export interface Caller {
  /** The authenticated principal, or 'anonymous@<peer>' when auth is off. */
  readonly actor: string;
  /** The peer address; '' for the server itself. */
  readonly peer: string;
}

/** What a promote check is told about the change it judges. */
export interface PromoteContext {
  /** promote: the active pointer moves; canary: a canary of the version starts; rollback: the pointers swap back. */
  readonly action: 'promote' | 'canary' | 'rollback';
  readonly caller: Caller;
  /** The active version before the change (null: none). */
  readonly active: number | null;
  /** Gates given with this promote, beside the configured ones (gates.ts syntax). */
  readonly require: readonly string[];
  /** Promote even if gates fail (audited as forced). */
  readonly force: boolean;
}

/**
 * Runs before a pointer moves to `version` (or a canary of it starts); throwing refuses the change and
 * leaves the pointers. What it returns goes into the change's audit entry (the evidence it judged).
 * In role all the local follower loads and warms the version here, so a version that cannot be
 * served is refused; the promotion gates are one too (gates.ts).
 */
export type PromoteCheck = (model: string, version: number, ctx: PromoteContext) => Promise<string | void>;
