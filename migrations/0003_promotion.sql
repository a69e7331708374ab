-- 0003_promotion: the evidence a promotion is judged on (read and written only by
-- src/registry/evidence.ts, except that store.ts counts dataset files when it asks whether a blob is
-- still used). Same rules as 0001: append-only file, no BEGIN/COMMIT, STRICT tables, ISO-8601 UTC
-- text timestamps, JSON columns checked with json_valid.

-- Golden datasets: a YOLO-format folder stored as content-addressed blobs, one per file, in the same
-- blob store as model files (so encrypted at rest alike). Versions are numbered per name like model
-- versions; identical content under the same name is the same version (UNIQUE (name, sha256)).
-- sha256 is the hash of the manifest: every file's path and sha256, in path order.
CREATE TABLE datasets (
  name        TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
  version     INTEGER NOT NULL CHECK (version >= 1),
  sha256      TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
  created_at  TEXT    NOT NULL,
  created_by  TEXT    NOT NULL CHECK (created_by <> ''),
  notes       TEXT    NOT NULL DEFAULT '',
  images      INTEGER NOT NULL CHECK (images >= 1),
  boxes       INTEGER NOT NULL CHECK (boxes >= 0),
  size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
  -- Class names from classes.txt or data.yaml; [] when the dataset names none (the model's are used).
  class_names TEXT    NOT NULL
              CHECK (CASE WHEN json_valid(class_names) THEN json_type(class_names) = 'array' ELSE 0 END),
  PRIMARY KEY (name, version),
  UNIQUE (name, sha256)
) STRICT;

-- One row per file of a dataset version: images/…, labels/…, classes.txt, data.yaml.
CREATE TABLE dataset_files (
  dataset    TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  path       TEXT    NOT NULL CHECK (length(path) BETWEEN 1 AND 1024),
  sha256     TEXT    NOT NULL CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
  size_bytes INTEGER NOT NULL CHECK (size_bytes >= 0),
  PRIMARY KEY (dataset, version, path),
  FOREIGN KEY (dataset, version) REFERENCES datasets (name, version)
) STRICT;

-- "Is this blob still used?" counts dataset files too.
CREATE INDEX dataset_files_by_sha256 ON dataset_files (sha256);

-- A version scored on a dataset version with the serving pipeline (sightline registry evaluate).
-- Kept with the version; gone when the version is deleted.
CREATE TABLE evaluations (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  model           TEXT    NOT NULL,
  version         INTEGER NOT NULL,
  dataset         TEXT    NOT NULL,
  dataset_version INTEGER NOT NULL,
  created_at      TEXT    NOT NULL,
  created_by      TEXT    NOT NULL CHECK (created_by <> ''),
  -- mAP@0.5, mAP@0.5:0.95, per-class AP, latency percentiles, settings: the report as JSON.
  report          TEXT    NOT NULL CHECK (json_valid(report)),
  FOREIGN KEY (model, version) REFERENCES versions (model, version) ON DELETE CASCADE,
  FOREIGN KEY (dataset, dataset_version) REFERENCES datasets (name, version)
) STRICT;

CREATE INDEX evaluations_by_version ON evaluations (model, version, id);

-- Shadows and canaries of a candidate version beside the model's active version (the baseline).
-- Open while ended_at is NULL; at most one open trial of each kind per model. Rows stay after they
-- end (the evidence of a promotion), also when the candidate version is later deleted.
CREATE TABLE trials (
  id               INTEGER PRIMARY KEY AUTOINCREMENT,
  model            TEXT    NOT NULL REFERENCES models (name),
  kind             TEXT    NOT NULL CHECK (kind IN ('shadow', 'canary')),
  version          INTEGER NOT NULL CHECK (version >= 1),
  baseline_version INTEGER NOT NULL CHECK (baseline_version >= 1),
  -- shadow: the share of live requests also run on the candidate; canary: the share it serves.
  share            REAL    NOT NULL CHECK (share > 0 AND share <= 1),
  -- canary: its rollback margins and minimum sample (JSON object); {} for a shadow.
  settings         TEXT    NOT NULL CHECK (CASE WHEN json_valid(settings) THEN json_type(settings) = 'object' ELSE 0 END),
  started_at       TEXT    NOT NULL,
  started_by       TEXT    NOT NULL CHECK (started_by <> ''),
  ended_at         TEXT    NULL,
  ended_by         TEXT    NULL,
  outcome          TEXT    NULL CHECK (outcome IN ('stopped', 'promoted', 'rolled_back', 'superseded')),
  reason           TEXT    NOT NULL DEFAULT '',
  CHECK ((ended_at IS NULL) = (outcome IS NULL) AND (ended_at IS NULL) = (ended_by IS NULL))
) STRICT;

CREATE UNIQUE INDEX trials_one_open_per_kind ON trials (model, kind) WHERE ended_at IS NULL;
CREATE INDEX trials_by_version ON trials (model, version, id);

-- Each replica's latest tally of a trial (cumulative since the replica started on it), as JSON; the
-- registry sums them. Kept after the trial ends, so its evidence survives a registry restart.
CREATE TABLE trial_stats (
  trial_id   INTEGER NOT NULL REFERENCES trials (id),
  replica    TEXT    NOT NULL CHECK (length(replica) BETWEEN 1 AND 253),
  updated_at TEXT    NOT NULL,
  body       TEXT    NOT NULL CHECK (json_valid(body)),
  PRIMARY KEY (trial_id, replica)
) STRICT;
