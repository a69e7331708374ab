/**
 * The shipped alerting rules: `promtool check rules` and `promtool test rules` (series that fire and
 * series that must not, for every alert). promtool comes from the Debian package `prometheus`; .ci/run
 * installs it. Without it: fails under CI=true, skips loudly otherwise.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { parse } from 'yaml';
import { repoRoot } from '../support/shared.js';

const RULES_DIR = join(repoRoot, 'observability', 'prometheus');

function havePromtool(t: TestContext): boolean {
  const r = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (!r.error && r.status === 0) return true;
  const msg =
    'promtool not found on PATH (Debian/Ubuntu: apt-get install prometheus); the alerting rules are not tested';
  if (process.env.CI === 'true') throw new Error(msg);
  t.skip(msg); // one line in the test report
  return false;
}

function promtool(...args: string[]): string {
  const r = spawnSync('promtool', args, { cwd: RULES_DIR, encoding: 'utf8', timeout: 120_000 });
  const out = `${r.stdout}${r.stderr}`;
  assert.equal(r.status, 0, `promtool ${args.join(' ')} failed:\n${out}`);
  return out;
}

interface Rule {
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

interface RuleTest {
  alert_rule_test?: {
    eval_time: string;
    alertname: string;
    exp_alerts: { exp_labels: Record<string, string>; exp_annotations?: Record<string, string> }[];
  }[];
}

const rules = (
  parse(readFileSync(join(RULES_DIR, 'alerts.yml'), 'utf8')) as { groups: { name: string; rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);
const tests = (parse(readFileSync(join(RULES_DIR, 'alerts.test.yml'), 'utf8')) as { tests: RuleTest[] }).tests;

describe('Prometheus alerting rules', () => {
  test('promtool check rules', (t) => {
    if (!havePromtool(t)) return;
    assert.match(promtool('check', 'rules', 'alerts.yml'), /SUCCESS: \d+ rules found/);
  });

  test('promtool test rules: every alert fires on its series and stays quiet on the others', (t) => {
    if (!havePromtool(t)) return;
    assert.match(promtool('test', 'rules', 'alerts.test.yml'), /SUCCESS/);
  });

  test('every alert has a severity, a summary, a description with the expectation and window, and a runbook', () => {
    const names = rules.map((r) => r.alert);
    assert.ok(names.length >= 6);
    assert.equal(new Set(names).size, names.length, 'alert names are unique');
    for (const r of rules) {
      assert.ok(r.alert, 'alerting rules only');
      assert.match(r.labels?.severity ?? '', /^(critical|warning)$/, `${r.alert} severity`);
      const a = r.annotations ?? {};
      assert.ok(a.summary, `${r.alert} summary`);
      assert.match(a.description ?? '', /Expected:/, `${r.alert} description says what was expected`);
      assert.match(a.description ?? '', /minutes|hour|day/, `${r.alert} description says over which window`);
      assert.ok((a.runbook ?? '').length > 40, `${r.alert} runbook`);
    }
  });

  test('the tests cover every alert both firing and not firing', () => {
    const fires = new Set<string>();
    const quiet = new Set<string>();
    for (const t of tests) {
      for (const a of t.alert_rule_test ?? []) {
        if (a.exp_alerts.length > 0) {
          fires.add(a.alertname);
          for (const e of a.exp_alerts)
            assert.ok(
              e.exp_annotations?.description,
              `${a.alertname} at ${a.eval_time}: the rendered annotations are checked`,
            );
        } else quiet.add(a.alertname);
      }
    }
    for (const r of rules) {
      assert.ok(fires.has(r.alert!), `${r.alert} has a firing case`);
      assert.ok(quiet.has(r.alert!), `${r.alert} has a must-not-fire case`);
    }
  });
});
