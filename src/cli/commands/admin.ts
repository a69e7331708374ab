/**
 * `sightline token`, `sightline audit` and `sightline key`: administration of the registry's database
 * and files on the machine (or in the pod) where they live, like a database's own admin tools. They
 * work while the server runs (SQLite WAL; they do not take the server lock of registry/lock.ts); every
 * change is audited with the principal cli:<user>.
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig } from '../../config/index.js';
import { SightlineError } from '../../errors.js';
import {
  AuditLog,
  decryptAllBlobs,
  defaultMigrationsDir,
  generateKey,
  isTokenRole,
  parseKey,
  parseSince,
  RegistryStore,
  TOKEN_ROLES,
  rotateBlobKey,
  TokenStore,
} from '../../registry/index.js';
import { intArg, readFileArg } from '../args.js';

const actor = () => `cli:${userInfo().username}`;

/**
 * The registry's data directory: --data-dir, else the config (file/env) value. Commands that only read
 * refuse a directory without a database (a mistyped --data-dir) instead of creating an empty one.
 */
function openStore(o: { dataDir?: string; config?: string }, access: 'read' | 'write' = 'write'): RegistryStore {
  const dataDir = resolve(o.dataDir ?? loadConfig({ file: o.config }).registry.dataDir);
  if (access === 'read' && !existsSync(join(dataDir, 'registry.db'))) {
    throw new SightlineError(
      'INVALID_INPUT',
      `no registry database in ${dataDir}: give the server's data directory with --data-dir (or registry.dataDir in --config)`,
    );
  }
  return RegistryStore.open(dataDir, defaultMigrationsDir());
}

const withStore = (c: Command) =>
  c
    .option('--data-dir <dir>', 'registry data directory (default: from config, ./registry)')
    .option('--config <file>', 'config file', process.env.SIGHTLINE_CONFIG);

/** "30d", "12h", "90m" → an ISO time that far in the future. */
function expiresArg(v: string): string {
  const m = /^(\d+)([mhd])$/.exec(v);
  if (!m) throw new InvalidArgumentError(`expected a duration like 30d, 12h or 90m, got "${v}"`);
  const ms = Number(m[1]) * { m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'm' | 'h' | 'd'];
  return new Date(Date.now() + ms).toISOString();
}

export function tokenCommand(): Command {
  const cmd = new Command('token').description(
    'bearer tokens with roles (viewer, inferencer, publisher, admin), kept as hashes in the registry database',
  );
  withStore(cmd.command('create').description('create a token and print it once'))
    .requiredOption('--name <name>', 'unique name (who or what uses it)')
    .requiredOption('--role <role>', TOKEN_ROLES.join(' | '))
    .option('--expires <duration>', 'lifetime, e.g. 30d', expiresArg)
    .option('--json', 'print JSON')
    .action(
      (o: { name: string; role: string; expires?: string; json?: boolean; dataDir?: string; config?: string }) => {
        if (!isTokenRole(o.role))
          throw new SightlineError('INVALID_INPUT', `--role must be one of ${TOKEN_ROLES.join(', ')}`);
        const store = openStore(o);
        try {
          const tokens = new TokenStore(store.database, { audit: new AuditLog(store.database) });
          const { token, record } = tokens.create({
            name: o.name,
            role: o.role,
            expiresAt: o.expires ?? null,
            createdBy: actor(),
            peer: 'local',
          });
          if (o.json) console.log(JSON.stringify({ token, ...record }));
          else
            console.log(
              `${token}\n\ntoken "${record.name}" (${record.role}${record.expiresAt ? `, expires ${record.expiresAt}` : ''}): shown once, store it now`,
            );
        } finally {
          store.close();
        }
      },
    );
  withStore(cmd.command('list').description('tokens (never their secrets)'))
    .option('--json', 'print JSON')
    .action((o: { json?: boolean; dataDir?: string; config?: string }) => {
      const store = openStore(o, 'read');
      try {
        const list = new TokenStore(store.database).list();
        if (o.json) return console.log(JSON.stringify(list, null, 2));
        if (!list.length)
          return console.log('no tokens yet: create one with sightline token create --name NAME --role ROLE');
        for (const t of list)
          console.log(
            `${t.id}  ${t.name.padEnd(20)} ${t.role.padEnd(10)} created ${t.createdAt} by ${t.createdBy}` +
              (t.expiresAt ? `  expires ${t.expiresAt}` : '') +
              (t.revokedAt ? `  REVOKED ${t.revokedAt}` : ''),
          );
      } finally {
        store.close();
      }
    });
  withStore(cmd.command('revoke <nameOrId>').description('revoke a token at once')).action(
    (nameOrId: string, o: { dataDir?: string; config?: string }) => {
      const store = openStore(o);
      try {
        const r = new TokenStore(store.database, { audit: new AuditLog(store.database) }).revoke(
          nameOrId,
          actor(),
          'local',
        );
        console.log(r.changed ? `revoked ${r.record.name}` : `${r.record.name} was already revoked`);
      } finally {
        store.close();
      }
    },
  );
  return cmd;
}

export function auditCommand(): Command {
  return withStore(
    new Command('audit').description('the tamper-evident audit log: registry changes, token changes and denied calls'),
  )
    .option('--since <when>', 'e.g. 15m, 24h, 7d or an ISO time')
    .option('--limit <n>', 'newest entries', intArg, 1000)
    .option('--verify', 'verify the hash chain; exit 1 if it was tampered with')
    .option('--json', 'JSON lines')
    .action(
      (o: { since?: string; limit: number; verify?: boolean; json?: boolean; dataDir?: string; config?: string }) => {
        const store = openStore(o, 'read');
        try {
          const audit = new AuditLog(store.database);
          const since = o.since ? parseSince(o.since) : undefined;
          if (o.json) for (const line of audit.exportJsonLines(since)) process.stdout.write(line);
          else {
            const entries = audit.list({ since, limit: o.limit });
            if (!entries.length) console.log(`no audit entries${o.since ? ` since ${o.since}` : ''}`);
            for (const e of entries)
              console.log(
                `${e.seq}  ${e.at}  ${e.outcome.padEnd(6)} ${e.action.padEnd(34)} ${e.target.padEnd(20)} ` +
                  `by ${e.principal}${e.peer ? ` from ${e.peer}` : ''}${e.reason ? `: ${e.reason}` : ''}`,
              );
          }
          if (o.verify) {
            const v = audit.verify();
            const line = v.ok
              ? `audit chain intact: ${v.checked} entries, head ${v.head?.seq ?? 0} ${v.head?.hash ?? ''}`
              : `AUDIT CHAIN BROKEN at seq ${v.firstBadSeq}: ${v.problem}`;
            console.error(line); // on stderr, so --json output stays parseable
            if (!v.ok) process.exitCode = 1;
          }
        } finally {
          store.close();
        }
      },
    );
}

export function keyCommand(): Command {
  const cmd = new Command('key').description('model encryption at rest (AES-256-GCM)');
  cmd
    .command('generate')
    .description('print a new random 256-bit key (hex): put it in a file or a Kubernetes Secret')
    .action(() => console.log(generateKey().toString('hex')));
  cmd
    .command('rotate')
    .description('re-encrypt every blob with a new key; crash-safe and resumable (run it again after an interruption)')
    .option('--data-dir <dir>', 'registry data directory', 'registry')
    .option('--from-key-file <file>', 'current key (omit when the blobs are not encrypted yet)')
    .option('--to-key-file <file>', 'new key (omit to decrypt everything)')
    .action(async (o: { dataDir: string; fromKeyFile?: string; toKeyFile?: string }) => {
      const read = (flag: string, f?: string) =>
        f ? parseKey(readFileArg(flag, f).toString('utf8').trim(), `${flag} ${f}`) : null;
      const from = read('--from-key-file', o.fromKeyFile);
      const to = read('--to-key-file', o.toKeyFile);
      const dir = resolve(o.dataDir);
      const r = to ? await rotateBlobKey(dir, { from, to }) : await decryptAllBlobs(dir, from!);
      console.log(`${r.total} blobs: ${r.rotated} rewritten, ${r.skipped} already done, ${r.failed.length} failed`);
      for (const f of r.failed) console.error(`  ${f.sha256}: ${f.reason}`);
      if (r.failed.length) process.exitCode = 1;
    });
  return cmd;
}
