/**
 * Schema migrations: ordered SQL files `NNNN_name.sql`, applied in one transaction, with the applied
 * count kept in PRAGMA user_version. A database from a newer build is refused rather than guessed at.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { SightlineError } from '../errors.js';

const FILE_NAME = /^(\d{4})_[a-z0-9_]+\.sql$/;

/** How long a connection waits for another one's write lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5000;

/**
 * `<repo>/migrations`, from this file compiled to `<repo>/dist/src/registry/migrate.js` (three levels up).
 * The published package ships `migrations/` next to `dist/`, so this holds there too.
 */
export function defaultMigrationsDir(): string {
  return fileURLToPath(new URL('../../../migrations', import.meta.url));
}

export interface MigrationFile {
  readonly number: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * Reads the migration files in order. The numbers must be exactly 1..N: a gap or a duplicate means a
 * broken build, and applying "the rest" of a broken list could corrupt a database.
 */
export function readMigrations(migrationsDir: string): MigrationFile[] {
  let names: string[];
  try {
    names = readdirSync(migrationsDir).filter((n) => n.endsWith('.sql'));
  } catch (e) {
    throw new SightlineError(
      'INTERNAL',
      `cannot read the migrations folder ${migrationsDir}`,
      { migrationsDir },
      { cause: e },
    );
  }
  names.sort();
  return names.map((name, i) => {
    const m = FILE_NAME.exec(name);
    if (!m) {
      throw new SightlineError('INTERNAL', `migration file ${name} is not named NNNN_name.sql`, {
        migrationsDir,
        name,
      });
    }
    const number = Number(m[1]);
    if (number !== i + 1) {
      throw new SightlineError(
        'INTERNAL',
        `migration ${name} should be number ${i + 1}: the files must be numbered 0001, 0002, … with no gaps`,
        {
          migrationsDir,
          name,
        },
      );
    }
    return { number, name, sql: readFileSync(join(migrationsDir, name), 'utf8') };
  });
}

export interface MigrateResult {
  /** Schema version before (0 for a new database) and after. */
  readonly from: number;
  readonly to: number;
}

/**
 * Brings `db` up to the newest schema in `migrationsDir` and sets the connection pragmas.
 * Throws PRECONDITION if the database was written by a newer build.
 */
export function migrate(db: Database.Database, migrationsDir: string): MigrateResult {
  const files = readMigrations(migrationsDir);
  const have = userVersion(db);
  // Checked before any pragma that writes to the file (journal_mode), so a newer database is left untouched.
  if (have > files.length) {
    throw newerThanBuild(have, files.length);
  }

  // WAL: readers do not block the writer. FULL: a committed transaction survives power loss, not just a crash.
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);

  if (have < files.length) {
    // Foreign keys off while migrating (a migration may rebuild a table) and checked as a whole before
    // commit instead. The pragma is a no-op inside a transaction, hence outside.
    db.pragma('foreign_keys = OFF');
    try {
      db.transaction(() => {
        // Re-read inside the write transaction: another process may have migrated in the meantime.
        const now = userVersion(db);
        if (now > files.length) throw newerThanBuild(now, files.length);
        for (const f of files.slice(now)) db.exec(f.sql);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) {
          throw new SightlineError(
            'INTERNAL',
            `migration to v${files.length} leaves ${broken.length} foreign key violation(s); nothing was applied`,
            {
              violations: broken.slice(0, 10),
            },
          );
        }
        db.pragma(`user_version = ${files.length}`);
      }).immediate();
    } finally {
      db.pragma('foreign_keys = ON');
    }
  } else {
    db.pragma('foreign_keys = ON');
  }
  return { from: have, to: files.length };
}

function newerThanBuild(have: number, build: number): SightlineError {
  return new SightlineError(
    'PRECONDITION',
    `registry schema v${have} is newer than this build (v${build}); upgrade sightline or use the matching database`,
    { schemaVersion: have, buildVersion: build },
  );
}

function userVersion(db: Database.Database): number {
  return db.pragma('user_version', { simple: true }) as number;
}
