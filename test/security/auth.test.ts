/** Tokens and roles: every RPC with every role, expiry, revocation, rate limiting, and the audit log. */
import { credentials, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { makeGenericClientConstructor } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { call, registryClient } from '../../src/cli/client.js';
import { DetectorService } from '../../src/generated/sightline/v1/detector.js';
import { MonitoringService } from '../../src/generated/sightline/v1/monitoring.js';
import { RegistryService } from '../../src/generated/sightline/v1/registry.js';
import { GRPCInferenceServiceService } from '../../src/generated/inference/open_inference_grpc.js';
import { AuditLog, defaultMigrationsDir, RegistryStore, TokenStore } from '../../src/registry/index.js';
import { RPC_CAPABILITY } from '../../src/transport/grpc/auth.js';
import { createToken, runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('auth');
const ROLES = ['viewer', 'inferencer', 'publisher', 'admin'] as const;
/** The four roles, and the replicas' own token (auth.replicaTokenFile): a viewer that may also replicate. */
const PRINCIPALS = [...ROLES, 'replica'] as const;
type Who = (typeof PRINCIPALS)[number];
const GRANTS: Record<Who, string[]> = {
  viewer: ['view'],
  inferencer: ['view', 'infer'],
  publisher: ['view', 'publish'],
  admin: ['view', 'infer', 'publish', 'administer'],
  replica: ['view', 'replicate'],
};
const REPLICA_TOKEN = 'sl_00000000000000ff_replica-secret-of-the-role-matrix-test-000000';

interface Method {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
}

const SERVICES = [DetectorService, RegistryService, MonitoringService, GRPCInferenceServiceService] as const;
const methods: Method[] = SERVICES.flatMap((s) =>
  Object.values(s).map((m) => ({ path: m.path, requestStream: m.requestStream, responseStream: m.responseStream })),
);

/** Calls any method with an empty message and returns the status code it ends with. */
function statusOf(client: Client, m: Method, token: string | null): Promise<status> {
  const md = new Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const ser = () => Buffer.alloc(0);
  const de = (b: Buffer) => b;
  const deadline = Date.now() + 5000;
  return new Promise((resolve) => {
    const done = (e: ServiceError | null) => resolve(e ? e.code : status.OK);
    if (!m.requestStream && !m.responseStream)
      return void client.makeUnaryRequest(m.path, ser, de, Buffer.alloc(0), md, { deadline }, (e) => done(e));
    if (m.requestStream && !m.responseStream) {
      const c = client.makeClientStreamRequest(m.path, ser, de, md, { deadline }, (e) => done(e));
      return void c.end();
    }
    const bidi = m.requestStream ? client.makeBidiStreamRequest(m.path, ser, de, md, { deadline }) : null;
    const c = bidi ?? client.makeServerStreamRequest(m.path, ser, de, Buffer.alloc(0), md, { deadline });
    // An allowed stream may run forever (WatchModels): its first message, or no quick refusal, proves it passed the check.
    const timer = setTimeout(() => (c.cancel(), resolve(status.OK)), 400);
    c.on('data', () => (clearTimeout(timer), c.cancel(), resolve(status.OK)));
    c.on(
      'error',
      (e: ServiceError) => (clearTimeout(timer), resolve(e.code === status.CANCELLED ? status.OK : e.code)),
    );
    c.on('end', () => (clearTimeout(timer), resolve(status.OK)));
    bidi?.end();
  });
}

describe('authentication and roles', { skip: !haveData }, () => {
  let srv: TestServer;
  let client: Client;
  const tokens: Record<string, string> = { replica: REPLICA_TOKEN };
  const secrets = mkdtempSync(join(tmpdir(), 'sightline-auth-'));
  before(async () => {
    const replicaTokenFile = join(secrets, 'replica-token');
    writeFileSync(replicaTokenFile, REPLICA_TOKEN);
    srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      auth: { enabled: true, maxFailuresPerMinute: 1000, replicaTokenFile },
      pool: { workers: 1, warmupRuns: 0 },
    });
    for (const role of ROLES) {
      tokens[role] = await createToken(srv.dataDir, `t-${role}`, role);
    }
    client = new (makeGenericClientConstructor({}, ''))(srv.address, credentials.createInsecure());
  });
  after(async () => {
    client?.close();
    await srv?.close();
    rmSync(secrets, { recursive: true, force: true });
  });

  test('every RPC the server serves declares the capability it needs', () => {
    for (const m of methods) assert.ok(RPC_CAPABILITY[m.path], `${m.path} is missing from RPC_CAPABILITY`);
  });

  test('every RPC with every role, with no token and with a wrong one', async () => {
    const rows: string[] = [];
    for (const m of methods) {
      const need = RPC_CAPABILITY[m.path]!;
      for (const role of PRINCIPALS) {
        const code = await statusOf(client, m, tokens[role]!);
        const allowed =
          need === 'public' || (typeof need === 'string' ? [need] : need).some((c) => GRANTS[role].includes(c));
        if (allowed)
          assert.ok(
            code !== status.PERMISSION_DENIED && code !== status.UNAUTHENTICATED,
            `${role} may call ${m.path} but got ${status[code]}`,
          );
        else assert.equal(code, status.PERMISSION_DENIED, `${role} must not call ${m.path}`);
        rows.push(`${m.path.split('/').pop()}:${role}=${allowed ? 'allowed' : 'denied'}`);
      }
      if (need === 'public') {
        // Probes (OIP ServerLive, ServerReady) answer without a token, whatever is sent.
        assert.equal(await statusOf(client, m, null), status.OK, `${m.path} without a token`);
        continue;
      }
      assert.equal(await statusOf(client, m, null), status.UNAUTHENTICATED, `${m.path} without a token`);
      assert.equal(
        await statusOf(client, m, 'sl_0000000000000000_notarealsecretnotarealsecretnotarealsecr'),
        status.UNAUTHENTICATED,
        `${m.path} with a made-up token`,
      );
    }
    console.log(`# role matrix: ${methods.length} RPCs x ${PRINCIPALS.length} principals checked`);
  });

  test('decrypted model bytes (FetchBlob) go to replicas and admins only, never to a viewer', async () => {
    const registry = registryClient(srv.address, { token: tokens.admin });
    const { sha256 } = await call(registry, registry.getVersion, { model: 'det', version: 1 });
    registry.close();
    const fetch = (who: Who) =>
      new Promise<{ bytes: number } | { code: status }>((resolve) => {
        const c = registryClient(srv.address, { token: tokens[who] });
        let bytes = 0;
        const s = c.fetchBlob({ sha256 });
        s.on('data', (chunk: { data: Uint8Array }) => (bytes += chunk.data.length));
        s.on('end', () => (c.close(), resolve({ bytes })));
        s.on('error', (e: ServiceError) => (c.close(), resolve({ code: e.code })));
      });
    const size = statSync(modelPath('yolo11n_int8_320.onnx')).size;
    assert.deepEqual(await fetch('replica'), { bytes: size });
    assert.deepEqual(await fetch('admin'), { bytes: size });
    for (const role of ['viewer', 'inferencer', 'publisher'] as const)
      assert.deepEqual(await fetch(role), { code: status.PERMISSION_DENIED }, role);
  });

  test('health checks need no token (probes)', async () => {
    const code = await statusOf(
      client,
      { path: '/grpc.health.v1.Health/Check', requestStream: false, responseStream: false },
      null,
    );
    assert.equal(code, status.OK);
  });

  test('expired and revoked tokens are refused with the same message as unknown ones', async () => {
    const store = RegistryStore.open(srv.dataDir, defaultMigrationsDir());
    // Created an hour ago with a 30-minute lifetime.
    const ts = new TokenStore(store.database, {
      audit: new AuditLog(store.database),
      now: () => new Date(Date.now() - 3_600_000),
    });
    const expired = ts.create({
      name: 'short-lived',
      role: 'admin',
      expiresAt: new Date(Date.now() - 1_800_000),
      createdBy: 'test',
    }).token;
    store.close();
    const list: Method = { path: '/sightline.v1.Registry/ListModels', requestStream: false, responseStream: false };
    assert.equal(await statusOf(client, list, expired), status.UNAUTHENTICATED);
    const ok = await runCli([
      'token',
      'create',
      '--name',
      'to-revoke',
      '--role',
      'viewer',
      '--json',
      '--data-dir',
      srv.dataDir,
    ]);
    const tok = (JSON.parse(ok.stdout) as { token: string }).token;
    assert.equal(await statusOf(client, list, tok), status.OK);
    const rv = await runCli(['token', 'revoke', 'to-revoke', '--data-dir', srv.dataDir]);
    assert.equal(rv.code, 0, rv.stderr);
    assert.equal(await statusOf(client, list, tok), status.UNAUTHENTICATED, 'a revoked token is refused at once');
    const listed = await runCli(['token', 'list', '--json', '--data-dir', srv.dataDir]);
    // The secret is base64url and may itself contain '_': take everything after `sl_<16 hex id>_`.
    const secret = /^sl_[0-9a-f]{16}_(.+)$/.exec(tok)![1]!;
    assert.equal(secret.length, 43);
    assert.ok(!listed.stdout.includes(secret), 'secrets are never listed');
  });

  test('the audit log records denied calls and registry changes, and its chain catches an edited row', async () => {
    const promote: Method = { path: '/sightline.v1.Registry/Promote', requestStream: false, responseStream: false };
    assert.equal(await statusOf(client, promote, tokens.viewer!), status.PERMISSION_DENIED);
    const md = new Metadata();
    md.set('authorization', `Bearer ${tokens.admin}`);
    // --token-file: how an operator uses the chart's mounted admin token (kubectl exec … -- sightline …).
    const tokenFile = join(srv.dataDir, 'admin-token');
    writeFileSync(tokenFile, `${tokens.admin}\n`);
    const r = await runCli([
      'registry',
      'promote',
      'det',
      '1',
      '--server',
      srv.address,
      '--token-file',
      tokenFile,
      '--reason',
      'audit test',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const log = await runCli(['audit', '--data-dir', srv.dataDir, '--json', '--verify']);
    assert.equal(log.code, 0, log.stderr);
    const entries = log.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; outcome: string; principal: string; target: string });
    assert.ok(
      entries.some(
        (e) => e.outcome === 'denied' && e.action === '/sightline.v1.Registry/Promote' && e.principal === 't-viewer',
      ),
    );
    assert.ok(
      entries.some(
        (e) => e.outcome === 'ok' && e.action === 'promote' && e.principal === 't-admin' && e.target === 'det@1',
      ),
    );
    assert.ok(
      entries.some((e) => e.action.startsWith('token.') || e.action.includes('token')),
      'token changes are audited',
    );
    assert.match(log.stderr, /audit chain intact/);
    // Edit one row behind the server's back (dropping the trigger that forbids it first).
    const db = new Database(join(srv.dataDir, 'registry.db'));
    const triggers = db
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'")
      .all() as { name: string }[];
    for (const t of triggers) db.exec(`DROP TRIGGER ${t.name}`);
    const victim = db.prepare("SELECT seq FROM audit WHERE outcome = 'denied' ORDER BY seq LIMIT 1").get() as {
      seq: number;
    };
    db.prepare("UPDATE audit SET outcome = 'ok' WHERE seq = ?").run(victim.seq);
    db.close();
    const v = await runCli(['audit', '--data-dir', srv.dataDir, '--verify']);
    assert.equal(v.code, 1);
    assert.match(v.stderr, new RegExp(`BROKEN at seq ${victim.seq}`));
  });
});

describe('rate limiting of failed authentication', { skip: !haveData }, () => {
  test('after N failures from one address even a valid token is refused for the rest of the minute', async () => {
    const srv = await startTestServer({
      auth: { enabled: true, maxFailuresPerMinute: 3 },
      pool: { workers: 1, warmupRuns: 0 },
    });
    try {
      const r = await runCli([
        'token',
        'create',
        '--name',
        'good',
        '--role',
        'viewer',
        '--json',
        '--data-dir',
        srv.dataDir,
      ]);
      const good = (JSON.parse(r.stdout) as { token: string }).token;
      const client = new (makeGenericClientConstructor({}, ''))(srv.address, credentials.createInsecure());
      const list: Method = { path: '/sightline.v1.Registry/ListModels', requestStream: false, responseStream: false };
      assert.equal(await statusOf(client, list, good), status.OK);
      for (let i = 0; i < 3; i++) assert.equal(await statusOf(client, list, 'wrong'), status.UNAUTHENTICATED);
      assert.equal(await statusOf(client, list, good), status.UNAUTHENTICATED, 'the address is locked out');
      client.close();
    } finally {
      await srv.close();
    }
  });
});
