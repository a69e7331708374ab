/**
 * The layout is the architecture: src/ areas may import only the areas below them (transport →
 * serving → inference, registry, monitoring, telemetry → errors, identifiers), and no module imports itself
 * through a chain. Read from the TypeScript sources, so a wrong import fails here, not in review.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/shared.js';

const SRC = join(repoRoot, 'src');

/**
 * What each area may import besides itself. `main` (src/main.ts) composes everything; `cli` drives it.
 * One table in layers.json, which eslint.config.js turns into import-x/no-restricted-paths zones.
 */
const ALLOWED = (
  JSON.parse(readFileSync(join(repoRoot, 'test', 'architecture', 'layers.json'), 'utf8')) as {
    allowed: Record<string, string[]>;
  }
).allowed;

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'generated' ? [] : sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

const areaOf = (file: string) => relative(SRC, file).split('/')[0]!.replace(/\.ts$/, '');

/** Relative imports of a file (static, dynamic and type-only), resolved to .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s).replace(/\.js$/, '.ts'));
}

const files = sources(SRC);
const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => t.startsWith(SRC))]));

test('src/ areas import only the areas below them', () => {
  assert.ok(files.length > 50, `found ${files.length} source files under ${SRC}`);
  const wrong: string[] = [];
  for (const [file, targets] of graph) {
    const from = areaOf(file);
    assert.ok(ALLOWED[from], `${relative(SRC, file)}: area ${from} is not in the layering table`);
    for (const t of targets) {
      const to = areaOf(t);
      if (to !== from && !ALLOWED[from]!.includes(to))
        wrong.push(`${relative(SRC, file)} → ${relative(SRC, t)} (${from} may not import ${to})`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import cycles between modules', () => {
  const state = new Map<string, 'open' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]) => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(' → '));
      return;
    }
    state.set(f, 'open');
    for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of files) visit(f, []);
  assert.deepEqual(cycles, []);
});
