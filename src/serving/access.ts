/**
 * Who may call what. Callers present bearer tokens; each RPC needs one capability (view, infer,
 * publish, administer) and roles grant capabilities. Failures never say whether a token exists;
 * repeated failures from one address are refused outright for the rest of the minute; every denied
 * call and every registry change is appended to the hash-chained audit log.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { SightlineError } from '../errors.js';
import {
  roleAllows,
  type AuditLog,
  type AuditOutcome,
  type AuthResult,
  type Capability,
  type TokenRole,
  type TokenDigest,
} from '../registry/index.js';
import type { Logger } from '../telemetry/logger.js';

export type { Capability, TokenRole };

/** What an RPC needs: nothing ('public'), one capability, or any one of several. */
export type Requirement = Capability | readonly Capability[] | 'public';

export interface StaticToken {
  token: string;
  name: string;
  role: TokenRole;
  /** Capabilities beyond the role's (the replicas' token also has 'replicate'). */
  extra?: Capability[];
}

/** Where tokens are checked: the registry database, or a replica's mirror of it. */
export interface TokenSource {
  authenticate(bearer: string): AuthResult;
  /** The registry's source can list digests for replicas; a replica's mirror cannot. */
  digests?(): TokenDigest[];
}

export interface AccessOptions {
  enabled: boolean;
  maxFailuresPerMinute: number;
  /** The registry's tokens; null where there is no database (inference replicas use static tokens). */
  tokens: TokenSource | null;
  audit: AuditLog | null;
  staticTokens: StaticToken[];
  log: Logger;
  now?: () => number;
}

export interface CallInfo {
  /** e.g. "/sightline.v1.Registry/Promote". */
  method: string;
  peer: string;
  /** The `authorization` metadata value. */
  authorization: string | undefined;
  /** Subject of a verified client certificate (mutual TLS). */
  certSubject: string | null;
}

export type Decision = { ok: true; principal: string } | { ok: false; error: SightlineError };

const WINDOW_MS = 60_000;
const sha = (s: string) => createHash('sha256').update(s).digest();

/** The peer's address without the port: failures are counted per client machine. */
const peerHost = (peer: string) =>
  peer
    .replace(/^ipv[46]:/, '')
    .replace(/:\d+$/, '')
    .replace(/^\[|\]$/g, '');

export class AccessControl {
  private readonly failures = new Map<string, { start: number; count: number }>();
  private readonly statics: { hash: Buffer; name: string; role: TokenRole; extra: Capability[] }[];
  private readonly now: () => number;

  constructor(private readonly o: AccessOptions) {
    this.statics = o.staticTokens.map((t) => ({
      hash: sha(t.token.trim()),
      name: t.name,
      role: t.role,
      extra: t.extra ?? [],
    }));
    this.now = o.now ?? Date.now;
  }

  get enabled(): boolean {
    return this.o.enabled;
  }

  /** Decides one call needing `required`; 'public' calls (health) always pass. */
  authorize(call: CallInfo, required: Requirement): Decision {
    const identity = call.certSubject ? `cert:${call.certSubject}` : null;
    if (!this.o.enabled || required === 'public') return { ok: true, principal: identity ?? 'anonymous' };
    const host = peerHost(call.peer);
    if (this.limited(host)) {
      return {
        ok: false,
        error: new SightlineError(
          'UNAUTHENTICATED',
          'too many failed authentication attempts from this address; retry in a minute',
        ),
      };
    }
    const who = this.authenticate(call.authorization);
    if (!who) {
      this.fail(host);
      this.deny(call, identity ?? 'anonymous', 'invalid or missing credentials');
      return {
        ok: false,
        error: new SightlineError(
          'UNAUTHENTICATED',
          'a valid bearer token is required (authorization: Bearer <token>)',
        ),
      };
    }
    const principal = identity ? `${who.name} (${identity})` : who.name;
    const anyOf: readonly Capability[] = typeof required === 'string' ? [required] : required;
    if (!anyOf.some((c) => roleAllows(who.role, c) || who.extra.includes(c))) {
      const needs = anyOf.join(' or ');
      this.deny(call, principal, `role ${who.role} lacks ${needs}`);
      return {
        ok: false,
        error: new SightlineError(
          'PERMISSION_DENIED',
          `role ${who.role} may not call ${call.method.split('/').pop()} (it needs ${needs})`,
        ),
      };
    }
    return { ok: true, principal };
  }

  /** Token digests for replicas (SyncTokens); empty where this process has no token database. */
  tokenDigests(): TokenDigest[] {
    return this.o.tokens?.digests?.() ?? [];
  }

  /** Appends a registry change (or its failure) to the audit log. */
  record(principal: string, peer: string, action: string, target: string, outcome: AuditOutcome, reason = ''): void {
    try {
      this.o.audit?.append({ principal, peer, action, target, outcome, reason });
    } catch (e) {
      this.o.log.error({ event: 'audit_append_failed', action, err: (e as Error).message }, 'audit append failed');
    }
  }

  private authenticate(header: string | undefined): { name: string; role: TokenRole; extra: Capability[] } | null {
    if (!header) return null;
    const m = /^Bearer\s+(\S+)$/i.exec(header.trim());
    if (!m) return null;
    const token = m[1]!;
    const h = sha(token);
    for (const s of this.statics) if (timingSafeEqual(h, s.hash)) return s;
    const r = this.o.tokens?.authenticate(token);
    return r?.ok ? { name: r.principal.name, role: r.principal.role, extra: [] } : null;
  }

  private limited(host: string): boolean {
    const f = this.failures.get(host);
    return !!f && this.now() - f.start < WINDOW_MS && f.count >= this.o.maxFailuresPerMinute;
  }

  private fail(host: string): void {
    const t = this.now();
    const f = this.failures.get(host);
    if (!f || t - f.start >= WINDOW_MS) this.failures.set(host, { start: t, count: 1 });
    else f.count++;
    if (this.failures.size > 10_000) this.failures.clear(); // bounded memory under a spray of addresses
  }

  private deny(call: CallInfo, principal: string, reason: string): void {
    this.o.log.warn({ event: 'call_denied', method: call.method, peer: call.peer, principal, reason }, 'call denied');
    this.record(principal, call.peer, call.method, '', 'denied', reason);
  }
}
