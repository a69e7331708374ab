-- 0002_security: bearer tokens and the hash-chained audit log (read and written only by
-- src/registry/tokens.ts and src/registry/audit.ts). Same rules as 0001: append-only file, no
-- BEGIN/COMMIT, STRICT tables, ISO-8601 UTC text timestamps.
--
-- Encryption at rest needs no table: each encrypted blob file starts with a header naming its key
-- (see src/registry/crypto.ts), so the state of a key rotation is the files themselves and a rotation
-- cut short is resumed by running it again.

-- One row per bearer token. The token itself ('sl_<id>_<secret>') is shown once at creation and never
-- stored: only sha256(secret). Secrets are 256 random bits, so a fast hash is enough; a slow KDF
-- (bcrypt, scrypt) only helps against guessing low-entropy passwords, and would cost every call.
-- Rows are never deleted (the audit log refers to them by id); revocation sets revoked_at once.
CREATE TABLE tokens (
  id          TEXT NOT NULL PRIMARY KEY CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'),
  name        TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 128),
  role        TEXT NOT NULL CHECK (role IN ('viewer', 'inferencer', 'publisher', 'admin')),
  secret_hash TEXT NOT NULL CHECK (length(secret_hash) = 64 AND secret_hash NOT GLOB '*[^0-9a-f]*'),
  created_at  TEXT NOT NULL,
  created_by  TEXT NOT NULL CHECK (created_by <> ''),
  expires_at  TEXT NULL,
  revoked_at  TEXT NULL,
  revoked_by  TEXT NULL,
  CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
) STRICT;

CREATE TRIGGER tokens_no_delete BEFORE DELETE ON tokens
BEGIN
  SELECT RAISE(ABORT, 'tokens are revoked, never deleted');
END;

CREATE TRIGGER tokens_identity_immutable BEFORE UPDATE OF id, name, role, secret_hash, created_at, created_by, expires_at ON tokens
BEGIN
  SELECT RAISE(ABORT, 'tokens: only revocation may change a token');
END;

CREATE TRIGGER tokens_revoke_once BEFORE UPDATE OF revoked_at, revoked_by ON tokens
WHEN OLD.revoked_at IS NOT NULL
BEGIN
  SELECT RAISE(ABORT, 'tokens: a revoked token stays revoked');
END;

-- Every registry mutation and every denied call, oldest first by seq. hash = sha256 of the entry's
-- fields and prev_hash (the previous row's hash; 64 zeros for seq 1), so an edited, deleted or
-- reordered row breaks the chain. The triggers stop mistakes; someone with write access to the file
-- can drop them, which is what the chain detects. seq is written explicitly (last + 1) inside the
-- appending transaction because it is part of the hash.
CREATE TABLE audit (
  seq       INTEGER PRIMARY KEY AUTOINCREMENT,
  at        TEXT NOT NULL,
  principal TEXT NOT NULL,
  peer      TEXT NOT NULL,
  action    TEXT NOT NULL CHECK (action <> ''),
  target    TEXT NOT NULL,
  outcome   TEXT NOT NULL CHECK (outcome IN ('ok', 'denied', 'error')),
  reason    TEXT NOT NULL,
  prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
  hash      TEXT NOT NULL CHECK (length(hash) = 64)
) STRICT;

-- `sightline audit --since …`
CREATE INDEX audit_by_time ON audit (at);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only: rows cannot be updated');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
  SELECT RAISE(ABORT, 'audit is append-only: rows cannot be deleted');
END;
