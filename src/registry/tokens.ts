/**
 * Bearer tokens and roles. A token is `sl_<id>_<secret>`: id = 16 hex digits (public, the row key, shown
 * in listings and the audit log), secret = 32 random bytes in base64url. Only sha256(secret) is stored,
 * and the token is returned once, by create(). Authentication looks the row up by id and compares
 * hashes with timingSafeEqual, hashing and comparing against a dummy when the id is unknown, so the
 * work done does not tell an unknown id from a wrong secret.
 *
 * Roles are capability sets, not a ladder:
 *   viewer     view                    health, list, status, drift
 *   inferencer view + infer            … and Detect, Stream
 *   publisher  view + publish          … and upload, profile (a CI pipeline needs no Detect)
 *   admin      every capability        … and promote, rollback, delete, tokens
 * Transport maps each RPC to one capability and asks roleAllows(role, capability).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type Database from 'better-sqlite3';
import { SightlineError } from '../errors.js';
import { isIdentifier } from '../identifiers.js';
import type { AuditLog } from './audit.js';

export const TOKEN_ROLES = ['viewer', 'inferencer', 'publisher', 'admin'] as const;
export type TokenRole = (typeof TOKEN_ROLES)[number];
/** 'replicate' (reading token digests) belongs to no role: only the replicas' own token has it. */
export const CAPABILITIES = ['view', 'infer', 'publish', 'administer', 'replicate'] as const;
export type Capability = (typeof CAPABILITIES)[number];

export const ROLE_GRANTS: Readonly<Record<TokenRole, ReadonlySet<Capability>>> = Object.freeze({
  viewer: new Set<Capability>(['view']),
  inferencer: new Set<Capability>(['view', 'infer']),
  publisher: new Set<Capability>(['view', 'publish']),
  admin: new Set<Capability>(['view', 'infer', 'publish', 'administer']),
});

export function isTokenRole(s: unknown): s is TokenRole {
  return typeof s === 'string' && (TOKEN_ROLES as readonly string[]).includes(s);
}

export function roleAllows(role: TokenRole, required: Capability): boolean {
  return ROLE_GRANTS[role]?.has(required) ?? false;
}

export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  readonly role: TokenRole;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly expiresAt: string | null;
  readonly revokedAt: string | null;
  readonly revokedBy: string | null;
}

export interface NewToken {
  /** Unique, forever (a revoked token keeps its name): 1-128 letters, digits, '.', '_', '-'. */
  readonly name: string;
  readonly role: TokenRole;
  readonly expiresAt?: Date | string | null;
  /** Who creates it (a principal name, or e.g. 'cli:root' for the local CLI). */
  readonly createdBy: string;
  /** Peer address for the audit entry, if an AuditLog is attached. */
  readonly peer?: string;
}

/** Who a valid token belongs to; what transport attaches to the call. */
export interface Principal {
  readonly tokenId: string;
  readonly name: string;
  readonly role: TokenRole;
}

export type AuthFailure = 'malformed' | 'unknown' | 'expired' | 'revoked';
export type AuthResult =
  { readonly ok: true; readonly principal: Principal } | { readonly ok: false; readonly reason: AuthFailure };

export interface TokenStoreOptions {
  readonly now?: () => Date;
  /**
   * If given, create() and revoke() append their audit entry in the same transaction as the change,
   * so a token never exists without its record.
   */
  readonly audit?: AuditLog;
  /** The secret hash; tests wrap it to see that the unknown-id path hashes too. */
  readonly hashSecret?: (secret: string) => Buffer;
}

const TOKEN = /^sl_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const MAX_ACTOR = 256;

/** sha256 of the secret's text; 256 random bits need no slow KDF (see migrations/0002_security.sql). */
export function hashTokenSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Compared against when the id is unknown, so that path does the same work as a wrong secret. */
const DUMMY_HASH = randomBytes(32);

interface TokenRow {
  id: string;
  name: string;
  role: TokenRole;
  secret_hash: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
}

function prepareStatements(db: Database.Database) {
  return {
    byId: db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE id = ?'),
    byName: db.prepare<[string], TokenRow>('SELECT * FROM tokens WHERE name = ?'),
    all: db.prepare<[], TokenRow>('SELECT * FROM tokens ORDER BY created_at, name'),
    insert: db.prepare<[TokenRow]>(
      `INSERT INTO tokens (id, name, role, secret_hash, created_at, created_by, expires_at, revoked_at, revoked_by)
       VALUES (@id, @name, @role, @secret_hash, @created_at, @created_by, @expires_at, @revoked_at, @revoked_by)`,
    ),
    revoke: db.prepare<[string, string, string]>(
      'UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL',
    ),
  };
}

/** What checking a token needs: no secret, only its hash. */
export type TokenDigest = Pick<TokenRow, 'id' | 'name' | 'role' | 'secret_hash' | 'expires_at' | 'revoked_at'>;

/**
 * Checks a token (bare, or the whole `authorization` value "Bearer sl_…") against a lookup by id.
 * Expiry and revocation are only reported for a correct secret, so a caller without the secret learns
 * nothing about a token; an unknown id is hashed and compared like a known one.
 */
export function verifyToken(
  bearer: string,
  lookup: (id: string) => TokenDigest | undefined,
  now: Date,
  hashSecret: (s: string) => Buffer = hashTokenSecret,
): AuthResult {
  const m = typeof bearer === 'string' ? TOKEN.exec(bearer.replace(/^\s*bearer\s+/i, '').trim()) : null;
  if (!m) return { ok: false, reason: 'malformed' };
  const [, id, secret] = m;
  const row = lookup(id!);
  const presented = hashSecret(secret!);
  const stored = row ? Buffer.from(row.secret_hash, 'hex') : DUMMY_HASH;
  // Both 32 bytes (timingSafeEqual throws on a length difference); the && keeps the dummy from ever matching.
  const match = timingSafeEqual(presented, stored) && row !== undefined;
  if (!row || !match) return { ok: false, reason: 'unknown' };
  if (row.revoked_at !== null) return { ok: false, reason: 'revoked' };
  if (row.expires_at !== null && now.getTime() >= Date.parse(row.expires_at)) return { ok: false, reason: 'expired' };
  return { ok: true, principal: { tokenId: row.id, name: row.name, role: row.role } };
}

/** The registry's tokens held in memory on an inference replica, refreshed from the registry. */
export class TokenMirror {
  private byId = new Map<string, TokenDigest>();

  /** `onUnknownId`: a well-formed token whose id the copy lacks was presented (it may be newer than the copy). */
  constructor(private readonly opts: { onUnknownId?: () => void } = {}) {}

  replace(digests: readonly TokenDigest[]): void {
    this.byId = new Map(
      digests.filter((d) => isTokenRole(d.role) && /^[0-9a-f]{64}$/.test(d.secret_hash)).map((d) => [d.id, d]),
    );
  }

  get size(): number {
    return this.byId.size;
  }

  authenticate(bearer: string, now: Date = new Date()): AuthResult {
    let missing = false;
    const r = verifyToken(
      bearer,
      (id) => {
        const d = this.byId.get(id);
        missing = d === undefined;
        return d;
      },
      now,
    );
    if (missing) this.opts.onUnknownId?.();
    return r;
  }
}

export class TokenStore {
  private readonly now: () => Date;
  private readonly audit: AuditLog | undefined;
  private readonly hashSecret: (secret: string) => Buffer;
  private readonly s: ReturnType<typeof prepareStatements>;

  /** `db` must be migrated (RegistryStore.open does it; pass `store.database`). */
  constructor(
    private readonly db: Database.Database,
    opts: TokenStoreOptions = {},
  ) {
    this.now = opts.now ?? (() => new Date());
    this.audit = opts.audit;
    this.hashSecret = opts.hashSecret ?? hashTokenSecret;
    this.s = prepareStatements(db);
  }

  /**
   * Creates a token. `token` is the only copy of the secret: show it once. ALREADY_EXISTS for a name
   * in use (revoked tokens included), INVALID_INPUT for a bad name, role or expiry.
   */
  create(input: NewToken): { token: string; record: TokenRecord } {
    if (typeof input.name !== 'string' || !isIdentifier(input.name)) {
      throw new SightlineError(
        'INVALID_INPUT',
        `invalid token name ${JSON.stringify(input.name)}: use 1-128 letters, ` +
          `digits, '.', '_' or '-', starting with a letter or digit`,
        { field: 'name' },
      );
    }
    if (!isTokenRole(input.role))
      throw new SightlineError(
        'INVALID_INPUT',
        `role must be one of ${TOKEN_ROLES.join(', ')}; got ${JSON.stringify(input.role)}`,
        { field: 'role' },
      );
    assertActor(input.createdBy, 'createdBy');
    const createdAt = this.now();
    let expiresAt: string | null = null;
    if (input.expiresAt !== undefined && input.expiresAt !== null) {
      const d = input.expiresAt instanceof Date ? input.expiresAt : new Date(input.expiresAt);
      if (Number.isNaN(d.getTime()))
        throw new SightlineError('INVALID_INPUT', `expiresAt ${String(input.expiresAt)} is not a date`, {
          field: 'expiresAt',
        });
      if (d.getTime() <= createdAt.getTime())
        throw new SightlineError('INVALID_INPUT', 'expiresAt is in the past', { field: 'expiresAt' });
      expiresAt = d.toISOString();
    }
    const id = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    const row: TokenRow = {
      id,
      name: input.name,
      role: input.role,
      secret_hash: this.hashSecret(secret).toString('hex'),
      created_at: createdAt.toISOString(),
      created_by: input.createdBy,
      expires_at: expiresAt,
      revoked_at: null,
      revoked_by: null,
    };
    return this.db
      .transaction(() => {
        if (this.s.byName.get(input.name)) {
          throw new SightlineError(
            'ALREADY_EXISTS',
            `a token named "${input.name}" already exists (names are never reused, even after revocation)`,
            { name: input.name },
          );
        }
        this.s.insert.run(row);
        this.audit?.append({
          principal: input.createdBy,
          peer: input.peer ?? '',
          action: 'token.create',
          target: `${input.name} (${id}, ${input.role})`,
          outcome: 'ok',
          reason: expiresAt ? `expires ${expiresAt}` : '',
        });
        return { token: `sl_${id}_${secret}`, record: toRecord(row) };
      })
      .immediate();
  }

  /** All tokens, revoked and expired included, oldest first. No secrets: there are none to show. */
  list(): TokenRecord[] {
    return this.s.all.all().map(toRecord);
  }

  get(nameOrId: string): TokenRecord | undefined {
    const row = this.find(nameOrId);
    return row && toRecord(row);
  }

  /**
   * Revokes a token by name or id; NOT_FOUND if there is none. Revoking a revoked token changes
   * nothing (changed: false), so a retried revoke is harmless.
   */
  revoke(nameOrId: string, by: string, peer = ''): { record: TokenRecord; changed: boolean } {
    assertActor(by, 'by');
    return this.db
      .transaction(() => {
        const row = this.find(nameOrId);
        if (!row) throw new SightlineError('NOT_FOUND', `no token named or with id "${nameOrId}"`, { token: nameOrId });
        if (row.revoked_at !== null) return { record: toRecord(row), changed: false };
        const at = this.now().toISOString();
        this.s.revoke.run(at, by, row.id);
        this.audit?.append({
          principal: by,
          peer,
          action: 'token.revoke',
          target: `${row.name} (${row.id}, ${row.role})`,
          outcome: 'ok',
          reason: '',
        });
        return { record: toRecord({ ...row, revoked_at: at, revoked_by: by }), changed: true };
      })
      .immediate();
  }

  /**
   * Checks a token (bare, or the whole `authorization` value "Bearer sl_…"). Expiry and revocation are
   * only reported for a correct secret, so a caller without the secret learns nothing about a token.
   */
  authenticate(bearer: string, now: Date = this.now()): AuthResult {
    return verifyToken(bearer, (id) => this.s.byId.get(id), now, this.hashSecret);
  }

  /** Every token's id, role, hash and validity, for inference replicas that check tokens locally. */
  digests(): TokenDigest[] {
    return this.s.all.all().map((r) => ({
      id: r.id,
      name: r.name,
      role: r.role,
      secret_hash: r.secret_hash,
      expires_at: r.expires_at,
      revoked_at: r.revoked_at,
    }));
  }

  /** By exact name, else by id; a string that is one token's name and another's id is refused. */
  private find(nameOrId: string): TokenRow | undefined {
    if (typeof nameOrId !== 'string' || nameOrId === '')
      throw new SightlineError('INVALID_INPUT', 'a token name or id is required');
    const byName = this.s.byName.get(nameOrId);
    const byId = /^[0-9a-f]{16}$/.test(nameOrId) ? this.s.byId.get(nameOrId) : undefined;
    if (byName && byId && byName.id !== byId.id) {
      throw new SightlineError(
        'INVALID_INPUT',
        `"${nameOrId}" is one token's name and another's id; use the id of the one you mean`,
        { token: nameOrId },
      );
    }
    return byName ?? byId;
  }
}

function assertActor(s: unknown, what: string): asserts s is string {
  if (typeof s !== 'string' || s === '' || s.length > MAX_ACTOR) {
    throw new SightlineError('INVALID_INPUT', `${what} must be a non-empty string of at most ${MAX_ACTOR} characters`, {
      field: what,
    });
  }
}

function toRecord(r: TokenRow): TokenRecord {
  return {
    id: r.id,
    name: r.name,
    role: r.role,
    createdAt: r.created_at,
    createdBy: r.created_by,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    revokedBy: r.revoked_by,
  };
}
