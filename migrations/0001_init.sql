-- 0001_init: the model registry (read and written only by src/registry/store.ts).
--
-- Append-only: once released this file is never edited; later changes go in 0002_….sql. migrate.ts runs
-- every missing file inside ONE transaction with foreign keys off and runs PRAGMA foreign_key_check
-- before committing, so a file must not contain BEGIN/COMMIT and may rebuild tables.
--
-- Timestamps are ISO-8601 UTC text written by the application ('2025-01-31T12:00:00.000Z').
-- JSON columns are TEXT checked with json_valid. Tables are STRICT so a wrong type is an error, not a
-- silent conversion.

-- One row per model name. The row is created by the first upload and never deleted, so next_version
-- survives the deletion of every version: version numbers are never reused.
-- The two pointers live here (not in a side table) so a pointer flip is one UPDATE of one row; the
-- composite foreign keys make a pointer to a missing or deleted version impossible.
CREATE TABLE models (
  name             TEXT    NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 128),
  created_at       TEXT    NOT NULL,
  active_version   INTEGER NULL,
  rollback_version INTEGER NULL,
  next_version     INTEGER NOT NULL DEFAULT 1 CHECK (next_version >= 1),
  -- A rollback target only exists once something is active, and is never the active version itself.
  CHECK (rollback_version IS NULL OR active_version IS NOT NULL),
  CHECK (rollback_version IS NULL OR rollback_version <> active_version),
  FOREIGN KEY (name, active_version) REFERENCES versions (model, version),
  FOREIGN KEY (name, rollback_version) REFERENCES versions (model, version)
) STRICT;

-- One row per uploaded version. The file itself is the blob <dataDir>/blobs/sha256/<sha256>, written
-- and fsynced before this row is inserted. Blobs are shared between versions with the same content.
CREATE TABLE versions (
  model          TEXT    NOT NULL REFERENCES models (name),
  version        INTEGER NOT NULL CHECK (version >= 1),
  sha256         TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
  size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
  source_name    TEXT    NULL,
  created_at     TEXT    NOT NULL,
  family         TEXT    NOT NULL CHECK (family <> ''),
  input_width    INTEGER NOT NULL CHECK (input_width > 0),
  input_height   INTEGER NOT NULL CHECK (input_height > 0),
  -- CASE, not AND: json_type raises on malformed JSON and AND does not promise to short-circuit.
  class_names    TEXT    NOT NULL
                 CHECK (CASE WHEN json_valid(class_names) THEN json_type(class_names) = 'array' ELSE 0 END),
  onnx_metadata  TEXT    NOT NULL
                 CHECK (CASE WHEN json_valid(onnx_metadata) THEN json_type(onnx_metadata) = 'object' ELSE 0 END),
  notes          TEXT    NOT NULL DEFAULT '',
  state          TEXT    NOT NULL DEFAULT 'ok' CHECK (state IN ('ok', 'corrupt')),
  corrupt_reason TEXT    NULL,
  CHECK ((state = 'corrupt') = (corrupt_reason IS NOT NULL)),
  PRIMARY KEY (model, version),
  -- Re-uploading the same bytes under the same model finds the existing version instead of a new one.
  UNIQUE (model, sha256)
) STRICT;

-- "Is this blob still used by any model?" when a version is deleted.
CREATE INDEX versions_by_sha256 ON versions (sha256);

-- Audit trail of pointer changes and deletions, oldest first by id. Append-only (triggers below).
--   promote:  from_version = previous active (NULL if none), to_version = new active
--   rollback: from_version = active before, to_version = active after (the former rollback target)
--   delete:   from_version = the deleted version, to_version = NULL
CREATE TABLE pointer_history (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  model        TEXT    NOT NULL REFERENCES models (name),
  at           TEXT    NOT NULL,
  actor        TEXT    NOT NULL,
  action       TEXT    NOT NULL CHECK (action IN ('promote', 'rollback', 'delete')),
  from_version INTEGER NULL,
  to_version   INTEGER NULL,
  reason       TEXT    NOT NULL DEFAULT '',
  CHECK (CASE action
           WHEN 'promote'  THEN to_version IS NOT NULL
           WHEN 'rollback' THEN from_version IS NOT NULL AND to_version IS NOT NULL
           ELSE from_version IS NOT NULL AND to_version IS NULL
         END)
) STRICT;

CREATE INDEX pointer_history_by_model ON pointer_history (model, id);

CREATE TRIGGER pointer_history_no_update BEFORE UPDATE ON pointer_history
BEGIN
  SELECT RAISE(ABORT, 'pointer_history is append-only: rows cannot be updated');
END;

CREATE TRIGGER pointer_history_no_delete BEFORE DELETE ON pointer_history
BEGIN
  SELECT RAISE(ABORT, 'pointer_history is append-only: rows cannot be deleted');
END;

-- Version numbers only come from the per-model counter, and the counter only goes up.
CREATE TRIGGER models_next_version_only_grows BEFORE UPDATE OF next_version ON models
WHEN NEW.next_version < OLD.next_version
BEGIN
  SELECT RAISE(ABORT, 'models.next_version never decreases: version numbers are never reused');
END;

CREATE TRIGGER versions_number_from_counter BEFORE INSERT ON versions
WHEN NEW.version >= (SELECT next_version FROM models WHERE name = NEW.model)
BEGIN
  SELECT RAISE(ABORT, 'versions.version must be below models.next_version (allocate it first)');
END;

-- What identifies a version's bytes never changes after upload (only state, notes and the like may).
CREATE TRIGGER versions_identity_immutable BEFORE UPDATE OF model, version, sha256, size_bytes ON versions
BEGIN
  SELECT RAISE(ABORT, 'versions: model, version, sha256 and size_bytes are immutable');
END;

-- Reference data-drift profiles per version and kind (written by the observability work).
CREATE TABLE profiles (
  model      TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  kind       TEXT    NOT NULL CHECK (length(kind) BETWEEN 1 AND 128),
  created_at TEXT    NOT NULL,
  body       TEXT    NOT NULL CHECK (json_valid(body)),
  PRIMARY KEY (model, version, kind),
  FOREIGN KEY (model, version) REFERENCES versions (model, version) ON DELETE CASCADE
) STRICT;
