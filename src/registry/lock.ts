/**
 * One server per data directory. Two servers on one registry would each verify, sweep and migrate the
 * same files and keep their own idea of the active versions. The lock is an exclusive SQLite
 * transaction on `<dataDir>/server.lock`, held until the process closes it or ends: SQLite takes a
 * POSIX (fcntl) lock, which the kernel drops when the process dies, however it dies. So no pid is ever
 * compared: a stale lock cannot exist, and a restarted container whose new process has the same pid
 * (pid 1) as the one that held the lock starts normally. The owner file beside it is only for the
 * message of a refused start. POSIX locks hold between processes of one machine on a local file
 * system (a Kubernetes ReadWriteOnce volume); they are unreliable on NFS, where SQLite is too.
 */
import Database from 'better-sqlite3';
import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { SightlineError } from '../errors.js';

const LOCK_FILE = 'server.lock';
export const OWNER_FILE = 'server.lock.json';

/** Who holds the lock, as its holder wrote it. */
export interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly startedAt: string;
}

export interface DataDirLock {
  readonly owner: LockOwner;
  /** Releases the lock; idempotent. Ending the process releases it too. */
  release(): void;
}

/** Takes the data directory's lock, or throws PRECONDITION naming the process that holds it. */
export function lockDataDir(dataDir: string): DataDirLock {
  const file = join(dataDir, LOCK_FILE);
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: 0 });
    db.exec('BEGIN EXCLUSIVE');
  } catch (e) {
    db?.close();
    if ((e as { code?: string }).code === 'SQLITE_BUSY') {
      throw new SightlineError(
        'PRECONDITION',
        `the registry data directory ${dataDir} is in use by ${describeOwner(readOwner(dataDir))}: ` +
          `stop that server, or give this one another directory (--data-dir, registry.dataDir)`,
        { dataDir },
      );
    }
    throw new SightlineError('INTERNAL', `cannot lock ${file}: ${(e as Error).message}`, { dataDir }, { cause: e });
  }
  const locked = db;
  const owner: LockOwner = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString() };
  try {
    writeFileSync(join(dataDir, OWNER_FILE), JSON.stringify(owner) + '\n');
  } catch (e) {
    locked.close();
    throw e;
  }
  return {
    owner,
    release: () => {
      if (locked.open) locked.close();
    },
  };
}

function readOwner(dataDir: string): LockOwner | null {
  try {
    const o = JSON.parse(readFileSync(join(dataDir, OWNER_FILE), 'utf8')) as Partial<LockOwner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' && typeof o.startedAt === 'string'
      ? (o as LockOwner)
      : null;
  } catch {
    return null; // not written yet by a holder that has only just started
  }
}

function describeOwner(o: LockOwner | null): string {
  if (!o) return 'another Sightline server';
  const where = o.host === hostname() ? '' : ` on host ${o.host}`;
  return `another Sightline server (pid ${o.pid}${where}, started ${o.startedAt})`;
}
