/**
 * The audit log: every registry mutation and every denied call, as a hash chain in the `audit` table.
 * Each entry's hash covers its fields, its seq and the previous entry's hash, so editing, deleting or
 * reordering rows breaks the chain at the first affected seq.
 *
 * What the chain does not prove on its own: someone able to rewrite the file can recompute every hash
 * after their edit, or cut rows off the end. verify() returns the head (last seq and hash); recording
 * it elsewhere from time to time (a log line, a ticket) and passing it back as `expectHead` catches both.
 */
import { createHash } from 'node:crypto';
import type Database from 'better-sqlite3';
import { SightlineError } from '../errors.js';

export type AuditOutcome = 'ok' | 'denied' | 'error';
const OUTCOMES: readonly AuditOutcome[] = ['ok', 'denied', 'error'];

export interface AuditInput {
  /** Token name, 'anonymous' for a call without a valid token, 'cli:<user>' for the local CLI. */
  readonly principal: string;
  /** Peer address ('ipv4:10.0.0.7:51234'); '' when there is none (local CLI). */
  readonly peer?: string;
  /** What was attempted: 'upload', 'promote', 'rollback', 'delete', 'profile', 'token.create', 'token.revoke', 'key.rotate', or the RPC of a denied call. */
  readonly action: string;
  /** What it was done to: 'yolo v3', a token name … */
  readonly target?: string;
  readonly outcome: AuditOutcome;
  /** Why (denied: 'expired', 'role viewer lacks publish'; ok: the operator's reason). */
  readonly reason?: string;
}

export interface AuditEntry {
  readonly seq: number;
  readonly at: string;
  readonly principal: string;
  readonly peer: string;
  readonly action: string;
  readonly target: string;
  readonly outcome: AuditOutcome;
  readonly reason: string;
  readonly prevHash: string;
  readonly hash: string;
}

export interface AuditHead {
  readonly seq: number;
  readonly hash: string;
}

export interface AuditVerifyResult {
  readonly ok: boolean;
  /** Entries checked before the first problem (all of them when ok). */
  readonly checked: number;
  /** The first seq where the chain breaks (for missing rows: the first missing seq). */
  readonly firstBadSeq?: number;
  readonly problem?: string;
  /** The last entry, to record elsewhere and pass back as expectHead later. */
  readonly head: AuditHead | null;
  /** False if the append-only triggers were dropped: not damage in itself, but worth an alarm. */
  readonly triggersIntact: boolean;
}

export interface AuditListOptions {
  /** Entries at or after this time (ISO-8601, or see parseSince). */
  readonly since?: string | Date;
  /** Entries with a larger seq. */
  readonly afterSeq?: number;
  /** At most this many: the newest ones, still returned oldest first. Default 1000. */
  readonly limit?: number;
}

export const GENESIS_HASH = '0'.repeat(64);
const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 100_000;
const MAX = { principal: 256, peer: 256, action: 128, target: 1024, reason: 4096 } as const;

/**
 * The hash of an entry: sha256 of a JSON array of a version tag and the fields in a fixed order. An
 * array (not an object) so the encoding has one form; anyone can recompute it from an export.
 */
export function auditEntryHash(e: Omit<AuditEntry, 'hash'>): string {
  const canonical = JSON.stringify([
    'sightline-audit-v1',
    e.seq,
    e.at,
    e.principal,
    e.peer,
    e.action,
    e.target,
    e.outcome,
    e.reason,
    e.prevHash,
  ]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/**
 * Checks a chain given oldest first (the table, or a JSON-lines export read back). A chain that does not
 * start at seq 1 is checked from its first entry's prevHash, so an export taken with --since verifies too.
 */
export function verifyAuditChain(
  entries: Iterable<AuditEntry>,
  opts: { fromStart?: boolean } = {},
): Omit<AuditVerifyResult, 'triggersIntact'> {
  const fromStart = opts.fromStart ?? true;
  let checked = 0;
  let prev: AuditEntry | null = null;
  const bad = (seq: number, problem: string) => ({
    ok: false,
    checked,
    firstBadSeq: seq,
    problem,
    head: prev && { seq: prev.seq, hash: prev.hash },
  });
  for (const e of entries) {
    const expectedSeq = prev ? prev.seq + 1 : fromStart ? 1 : e.seq;
    if (e.seq > expectedSeq) {
      return bad(
        expectedSeq,
        e.seq - 1 === expectedSeq
          ? `entry ${expectedSeq} is missing (deleted)`
          : `entries ${expectedSeq}-${e.seq - 1} are missing (deleted)`,
      );
    }
    if (e.seq < expectedSeq) return bad(e.seq, `entry ${e.seq} is out of order (after ${prev?.seq ?? 'the start'})`);
    const expectedPrev = prev ? prev.hash : fromStart ? GENESIS_HASH : e.prevHash;
    if (e.prevHash !== expectedPrev) {
      return bad(
        e.seq,
        `entry ${e.seq} does not follow entry ${e.seq - 1} (prev_hash mismatch): an entry was removed, altered or reordered`,
      );
    }
    if (auditEntryHash(e) !== e.hash)
      return bad(e.seq, `entry ${e.seq} was altered (its hash does not match its contents)`);
    prev = e;
    checked++;
  }
  return { ok: true, checked, head: prev && { seq: prev.seq, hash: prev.hash } };
}

interface AuditRow {
  seq: number;
  at: string;
  principal: string;
  peer: string;
  action: string;
  target: string;
  outcome: AuditOutcome;
  reason: string;
  prev_hash: string;
  hash: string;
}

function prepareStatements(db: Database.Database) {
  return {
    last: db.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq DESC LIMIT 1'),
    insert: db.prepare<[AuditRow]>(
      `INSERT INTO audit (seq, at, principal, peer, action, target, outcome, reason, prev_hash, hash)
       VALUES (@seq, @at, @principal, @peer, @action, @target, @outcome, @reason, @prev_hash, @hash)`,
    ),
    // Newest `limit` matching, returned oldest first.
    list: db.prepare<[string, number, number], AuditRow>(
      'SELECT * FROM (SELECT * FROM audit WHERE at >= ? AND seq > ? ORDER BY seq DESC LIMIT ?) ORDER BY seq',
    ),
    since: db.prepare<[string], AuditRow>('SELECT * FROM audit WHERE at >= ? ORDER BY seq'),
    all: db.prepare<[], AuditRow>('SELECT * FROM audit ORDER BY seq'),
    bySeq: db.prepare<[number], AuditRow>('SELECT * FROM audit WHERE seq = ?'),
    highWater: db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'audit'"),
    triggers: db.prepare<[], { n: number }>(
      "SELECT count(*) AS n FROM sqlite_master WHERE type = 'trigger' AND name IN ('audit_no_update', 'audit_no_delete')",
    ),
  };
}

export class AuditLog {
  private readonly now: () => Date;
  private readonly s: ReturnType<typeof prepareStatements>;

  /** `db` must be migrated (pass RegistryStore's `database`). */
  constructor(
    private readonly db: Database.Database,
    opts: { readonly now?: () => Date } = {},
  ) {
    this.now = opts.now ?? (() => new Date());
    this.s = prepareStatements(db);
  }

  /**
   * Appends an entry. IMMEDIATE: the write lock is taken before the last entry is read, so two
   * processes appending at once cannot both chain onto the same entry. Inside a caller's transaction it
   * joins it (the entry commits or rolls back with the change it records). Over-long fields are cut
   * (an audit entry must not fail because an error message was long).
   */
  append(input: AuditInput): AuditEntry {
    if (!OUTCOMES.includes(input.outcome)) {
      throw new SightlineError(
        'INVALID_INPUT',
        `audit outcome must be one of ${OUTCOMES.join(', ')}; got ${JSON.stringify(input.outcome)}`,
      );
    }
    const principal = clip(input.principal, MAX.principal);
    const action = clip(input.action, MAX.action);
    if (principal === '' || action === '')
      throw new SightlineError('INVALID_INPUT', 'audit entries need a principal and an action');
    const fields = {
      at: this.now().toISOString(),
      principal,
      peer: clip(input.peer ?? '', MAX.peer),
      action,
      target: clip(input.target ?? '', MAX.target),
      outcome: input.outcome,
      reason: clip(input.reason ?? '', MAX.reason),
    };
    return this.db
      .transaction((): AuditEntry => {
        const last = this.s.last.get();
        const unhashed = { seq: (last?.seq ?? 0) + 1, ...fields, prevHash: last?.hash ?? GENESIS_HASH };
        const entry: AuditEntry = { ...unhashed, hash: auditEntryHash(unhashed) };
        this.s.insert.run(toRow(entry));
        return entry;
      })
      .immediate();
  }

  /** Entries oldest first; see AuditListOptions. */
  list(opts: AuditListOptions = {}): AuditEntry[] {
    const limit = opts.limit ?? DEFAULT_LIMIT;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
      throw new SightlineError('INVALID_INPUT', `audit limit must be an integer from 1 to ${MAX_LIMIT}, got ${limit}`, {
        limit,
      });
    }
    const afterSeq = opts.afterSeq ?? 0;
    if (!Number.isSafeInteger(afterSeq) || afterSeq < 0)
      throw new SightlineError('INVALID_INPUT', `afterSeq must be a non-negative integer, got ${afterSeq}`);
    return this.s.list.all(sinceIso(opts.since), afterSeq, limit).map(toEntry);
  }

  /** The newest entry's seq and hash; null for an empty log. */
  head(): AuditHead | null {
    const last = this.s.last.get();
    return last ? { seq: last.seq, hash: last.hash } : null;
  }

  /**
   * Walks the whole chain from seq 1. Also checks that no entry after the last one existed (SQLite's
   * AUTOINCREMENT high-water mark) and, if given, that `expectHead` (recorded earlier) is still there.
   */
  verify(opts: { readonly expectHead?: AuditHead } = {}): AuditVerifyResult {
    const triggersIntact = (this.s.triggers.get()?.n ?? 0) === 2;
    const r = verifyAuditChain(mapIter(this.s.all.iterate(), toEntry));
    if (!r.ok) return { ...r, triggersIntact };
    const lastSeq = r.head?.seq ?? 0;
    const highWater = this.s.highWater.get()?.seq ?? 0;
    if (highWater > lastSeq) {
      return {
        ...r,
        ok: false,
        firstBadSeq: lastSeq + 1,
        problem: `entries after ${lastSeq} (up to ${highWater}) were deleted`,
        triggersIntact,
      };
    }
    const want = opts.expectHead;
    if (want) {
      const row = this.s.bySeq.get(want.seq);
      if (!row) {
        return {
          ...r,
          ok: false,
          firstBadSeq: lastSeq + 1,
          problem: `entry ${want.seq} (a recorded head) is gone: the log was cut short`,
          triggersIntact,
        };
      }
      if (row.hash !== want.hash) {
        return {
          ...r,
          ok: false,
          firstBadSeq: want.seq,
          problem: `entry ${want.seq} differs from the recorded head: the log was rewritten`,
          triggersIntact,
        };
      }
    }
    return { ...r, triggersIntact };
  }

  /**
   * The log as JSON lines (one entry per line, each ending in '\n'; fields as in AuditEntry), oldest
   * first. Lazy: the connection is busy until the iteration ends.
   */
  *exportJsonLines(since?: string | Date): IterableIterator<string> {
    const rows = since === undefined ? this.s.all.iterate() : this.s.since.iterate(sinceIso(since));
    for (const row of rows) yield `${JSON.stringify(toEntry(row))}\n`;
  }
}

/**
 * `--since` as an ISO-8601 time: either a date/time ('2025-01-31', '2025-01-31T12:00:00Z') or a
 * duration back from `now` ('90s', '15m', '24h', '7d').
 */
export function parseSince(s: string, now: Date = new Date()): string {
  const rel = /^(\d+)\s*([smhd])$/.exec(s.trim());
  if (rel) {
    const ms = Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now.getTime() - ms).toISOString();
  }
  const d = new Date(s);
  if (s.trim() === '' || Number.isNaN(d.getTime())) {
    throw new SightlineError(
      'INVALID_INPUT',
      `--since ${JSON.stringify(s)} is neither a date/time (2025-01-31T12:00:00Z) nor a duration (15m, 24h, 7d)`,
    );
  }
  return d.toISOString();
}

function sinceIso(since: string | Date | undefined): string {
  if (since === undefined) return '';
  return since instanceof Date ? since.toISOString() : parseSince(since);
}

function clip(s: string, max: number): string {
  const t = typeof s === 'string' ? s : String(s);
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function* mapIter<A, B>(it: Iterable<A>, f: (a: A) => B): IterableIterator<B> {
  for (const a of it) yield f(a);
}

function toRow(e: AuditEntry): AuditRow {
  return {
    seq: e.seq,
    at: e.at,
    principal: e.principal,
    peer: e.peer,
    action: e.action,
    target: e.target,
    outcome: e.outcome,
    reason: e.reason,
    prev_hash: e.prevHash,
    hash: e.hash,
  };
}

function toEntry(r: AuditRow): AuditEntry {
  return {
    seq: r.seq,
    at: r.at,
    principal: r.principal,
    peer: r.peer,
    action: r.action,
    target: r.target,
    outcome: r.outcome,
    reason: r.reason,
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}
