/**
 * The shipped alerting rules, the Grafana dashboard and the README's metric list name only metrics and
 * labels a real server exports (scraped after traffic that exercises every instrument), and the
 * dashboard is a valid Grafana JSON model driven by a datasource variable.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse } from 'yaml';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath, repoRoot } from '../support/shared.js';
import { openStream } from '../support/stream.js';
import { detectCall, promqlNames, scrape, type Exposition } from './support.js';

const haveData = sharedDataOrSkip('observability references');

interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: { expr: string; datasource?: { uid: string } }[];
}

const dashboard = JSON.parse(
  readFileSync(join(repoRoot, 'observability', 'grafana', 'sightline-dashboard.json'), 'utf8'),
) as {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query: string | { query: string } }[] };
  annotations: { list: { expr?: string }[] };
};
const rules = (
  parse(readFileSync(join(repoRoot, 'observability', 'prometheus', 'alerts.yml'), 'utf8')) as {
    groups: { rules: { alert: string; expr: string }[] }[];
  }
).groups.flatMap((g) => g.rules);

/** Every PromQL expression shipped, with where it comes from. */
function expressions(): { where: string; expr: string }[] {
  const out = rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }));
  for (const p of dashboard.panels)
    for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}"`, expr: t.expr });
  for (const a of dashboard.annotations.list) if (a.expr) out.push({ where: 'dashboard annotation', expr: a.expr });
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query.query;
    const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
    assert.ok(m, `variable ${v.name}: label_values(selector, label)`);
    out.push({ where: `variable ${v.name}`, expr: `${m[1]} / on (${m[2]}) group_left ${m[1]}` });
  }
  return out;
}

describe('dashboard JSON', () => {
  test('is a Grafana dashboard model on a datasource variable, panels not overlapping', () => {
    assert.equal(dashboard.uid, 'sightline-overview');
    assert.ok(dashboard.schemaVersion >= 36);
    const ds = dashboard.templating.list.find((v) => v.name === 'datasource');
    assert.equal(ds?.type, 'datasource');
    assert.equal(ds?.query, 'prometheus');
    const ids = dashboard.panels.map((p) => p.id);
    assert.equal(new Set(ids).size, ids.length, 'panel ids are unique');
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      const g = p.gridPos;
      assert.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0, `"${p.title}" fits the 24-column grid`);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `"${p.title}" overlaps another panel at ${x},${y}`);
          cells.add(`${x},${y}`);
        }
      }
      if (p.type === 'row') continue;
      assert.equal(p.datasource?.uid, '${datasource}', `"${p.title}" uses the datasource variable`);
      assert.ok(p.targets?.length, `"${p.title}" has queries`);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}');
    }
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n');
    for (const topic of [
      'calls by method',
      'error ratio',
      'latency per stage',
      'by version',
      'drift',
      'pool utilisation',
    ]) {
      assert.ok(titles.includes(topic), `a panel about ${topic}`);
    }
  });
});

describe('shipped PromQL and README against a real scrape', { skip: !haveData }, () => {
  let srv: TestServer;
  let e: Exposition;
  before(async () => {
    const bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer({
      models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 1, warmupRuns: 1 },
      http: { enabled: true, port: 0 },
    });
    // Traffic that touches every instrument.
    assert.ok((await detectCall(srv.client, { image: bus })).response);
    assert.ok((await detectCall(srv.client, { image: Buffer.alloc(0) })).error);
    assert.equal(
      (await fetch(`http://127.0.0.1:${srv.app.http!.port}/v1/detect`, { method: 'POST', body: bus })).status,
      200,
    );
    const s = openStream(srv.client, { policy: 'latest', maxInFlight: 1 });
    for (let i = 1; i <= 8; i++) s.send(i, bus);
    s.call.end();
    await s.done;
    srv.app.metrics.setDrift('yolo11n', '1', 'brightness', 0.12, 0.08);
    srv.app.metrics.countAnomaly('yolo11n', '1', 'brightness');
    e = (await scrape(srv.app.admin!.port)).exposition;
  });
  after(() => srv?.close());

  test('every metric and label in the alerting rules and the dashboard is exported', () => {
    const names = new Set(e.samples.map((s) => s.name));
    const labels = new Set(['job', 'instance', 'le', ...e.samples.flatMap((s) => Object.keys(s.labels))]);
    const missing: string[] = [];
    for (const { where, expr } of expressions()) {
      const used = promqlNames(expr);
      assert.ok(used.metrics.size > 0, `${where}: reads a metric`);
      for (const m of used.metrics) if (!names.has(m)) missing.push(`${where}: metric ${m}`);
      for (const l of used.labels) if (!labels.has(l)) missing.push(`${where}: label ${l}`);
    }
    assert.deepEqual(missing, []);
  });

  test('the README lists every exported metric, and exports every metric it lists', () => {
    const readme = readFileSync(join(repoRoot, 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('### Metrics'), readme.indexOf('### Tracing'));
    assert.ok(section.length > 100, 'README has a "### Metrics" section before "### Tracing"');
    const listed = new Set([...section.matchAll(/^\| `([a-z_:][a-z0-9_:]*)`/gm)].map((m) => m[1]!));
    const exported = new Set(e.types.keys());
    // Exported only after some garbage collection has happened, or while a shadow or canary runs (their
    // own tests scrape them: test/serving/shadow.test.ts, canary.test.ts); listed all the same.
    const sometimes = new Set([
      'v8js_gc_duration_seconds',
      'v8js_resource_active',
      'sightline_shadow_requests_total',
      'sightline_shadow_agreement',
      'sightline_shadow_boxes_total',
      'sightline_shadow_duration_seconds',
      'sightline_canaries_total',
    ]);
    assert.deepEqual(
      [...exported].filter((n) => !listed.has(n)),
      [],
      'exported but not in the README',
    );
    assert.deepEqual(
      [...listed].filter((n) => !exported.has(n) && !sometimes.has(n)),
      [],
      'in the README but not exported',
    );
  });
});
