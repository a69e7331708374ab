/**
 * The lint configuration enforces what it claims: ESLint's own API, with eslint.config.js, on source
 * text planted at a path inside src/ (lintText; nothing is written). For every area of layers.json, an
 * import of an area it may not import is reported by the boundary rule with the table's message, and
 * an allowed import is not; a line over 160 characters is reported too. Without this, a change to the
 * config (a zone built wrong, the rule dropped) would let `npm run lint` pass while enforcing nothing.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { ESLint, type Linter } from 'eslint';
import { repoRoot } from '../support/shared.js';

const { allowed } = JSON.parse(readFileSync(join(repoRoot, 'test', 'architecture', 'layers.json'), 'utf8')) as {
  allowed: Record<string, string[]>;
};

const FILE_AREAS = new Set(['errors', 'identifiers', 'main']);
const BOUNDARY = 'import-x/no-restricted-paths';

/** Where planted text for an area lives: the area's own file, or a new file in its folder. */
const plantedPath = (area: string) => join(repoRoot, 'src', FILE_AREAS.has(area) ? `${area}.ts` : `${area}/planted.ts`);

/** An import specifier of a module of `target`, as written in a file of `from`. */
function specifier(from: string, target: string): string {
  const up = FILE_AREAS.has(from) ? './' : '../';
  const module: Record<string, string> = {
    errors: 'errors.js',
    identifiers: 'identifiers.js',
    main: 'main.js',
    generated: 'generated/sightline/v1/detector.js',
    telemetry: 'telemetry/logger.js',
    transport: 'transport/version.js',
  };
  return up + (module[target] ?? `${target}/index.js`);
}

describe('eslint.config.js enforces the layering of layers.json and the line length', () => {
  let eslint: ESLint;
  const lint = async (area: string, text: string): Promise<Linter.LintMessage[]> => {
    const [result] = await eslint.lintText(text, { filePath: plantedPath(area) });
    return result!.messages;
  };
  before(() => {
    eslint = new ESLint({ cwd: repoRoot });
  });

  test('a planted wrong-layer import in every area is a boundary error naming what the area may import', async () => {
    const areas = [...Object.keys(allowed), 'generated'];
    const checked: string[] = [];
    for (const [area, may] of Object.entries(allowed)) {
      const forbidden = areas.find((other) => other !== area && !may.includes(other));
      if (!forbidden) continue; // an area that may import every other one
      const spec = specifier(area, forbidden);
      const messages = await lint(area, `import * as planted from '${spec}';\nexport const x = planted;\n`);
      const boundary = messages.filter((m) => m.ruleId === BOUNDARY);
      assert.equal(boundary.length, 1, `src/${area} importing ${spec}: ${JSON.stringify(messages)}`);
      assert.equal(boundary[0]!.severity, 2, 'an error, so npm run lint fails');
      assert.match(boundary[0]!.message, new RegExp(`src/${area} may import (only ${may.join(', ')}|no other area)`));
      checked.push(`${area} -> ${forbidden}`);
    }
    assert.ok(checked.length >= 10, `planted in ${checked.length} areas: ${checked.join('; ')}`);
    console.log(`# boundary errors for ${checked.join(', ')}`);
  });

  test('an allowed import is not reported', async () => {
    const messages = await lint('serving', `import * as ok from '../inference/index.js';\nexport const x = ok;\n`);
    assert.deepEqual(messages, []);
  });

  test('a line over 160 characters is an error', async () => {
    const long = `export const text = '${'x'.repeat(150)}';\n`;
    const messages = await lint('serving', long);
    assert.deepEqual(
      messages.map((m) => [m.ruleId, m.severity]),
      [['max-len', 2]],
    );
  });
});
