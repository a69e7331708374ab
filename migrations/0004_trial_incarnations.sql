-- 0004_trial_incarnations: a restart no longer erases a running trial's evidence. Replicas count a
-- trial in memory, cumulatively since their process started, so a restarted process (a replica
-- container restarted under the same pod name, or a server of role all) starts again from zero. Each
-- serving process now names its tallies with an incarnation (a random id drawn at start), and the
-- registry keeps one row per (trial, replica, incarnation) and sums them all: a new process adds a
-- row instead of overwriting the one before it. Same rules as 0001: append-only file, no
-- BEGIN/COMMIT, STRICT tables.

-- SQLite cannot change a primary key in place: the table is rebuilt. Rows from before carry the
-- incarnation '' (as do reports of replicas older than this schema, which keep overwriting their one
-- row as before).
CREATE TABLE trial_stats_v4 (
  trial_id    INTEGER NOT NULL REFERENCES trials (id),
  replica     TEXT    NOT NULL CHECK (length(replica) BETWEEN 1 AND 253),
  -- The reporting process's id (a UUID), '' for a replica that sends none.
  incarnation TEXT    NOT NULL CHECK (length(incarnation) <= 64),
  updated_at  TEXT    NOT NULL,
  body        TEXT    NOT NULL CHECK (json_valid(body)),
  PRIMARY KEY (trial_id, replica, incarnation)
) STRICT;

INSERT INTO trial_stats_v4 (trial_id, replica, incarnation, updated_at, body)
  SELECT trial_id, replica, '', updated_at, body FROM trial_stats;

DROP TABLE trial_stats;

ALTER TABLE trial_stats_v4 RENAME TO trial_stats;
