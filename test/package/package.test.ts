/**
 * What a user reads and installs agrees with what ships: the license, the install settings, the
 * commands the docs tell people to run, the image's ENTRYPOINT and the chart's config path.
 * (The packed CLI itself is installed and run by scripts/check-package.mjs, in .ci/run.)
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/shared.js';

const read = (...p: string[]) => readFileSync(join(repoRoot, ...p), 'utf8');
const pkg = JSON.parse(read('package.json')) as { license: string; allowScripts: Record<string, boolean> };

test('LICENSE is the license package.json and the image label name', () => {
  assert.equal(pkg.license, 'Apache-2.0');
  assert.match(read('LICENSE'), /^\s+Apache License\n\s+Version 2\.0, January 2004\n/);
  assert.match(read('Dockerfile'), /org\.opencontainers\.image\.licenses="Apache-2\.0"/);
});

test("onnxruntime-node's CUDA download is skipped on npm 10 (.npmrc) and npm 11 (allowScripts)", () => {
  assert.match(read('.npmrc'), /^onnxruntime-node-install=skip$/m);
  assert.equal(pkg.allowScripts['onnxruntime-node'], false);
});

test('no document runs `npx sightline` (outside a checkout it fetches an unrelated registry package)', () => {
  const docs = [
    'README.md',
    'helm/sightline/templates/NOTES.txt',
    ...readdirSync(join(repoRoot, 'docs')).map((f) => `docs/${f}`),
  ];
  for (const doc of docs) {
    const line = read(doc)
      .split('\n')
      .find((l) => /^\s*(?:\$\s*)?npx\s+sightline\b/.test(l));
    assert.equal(line, undefined, `${doc} tells users to run: ${line}`);
  }
});

test("the README quotes the Dockerfile's ENTRYPOINT and the chart's config file path", () => {
  const readme = read('README.md');
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(read('Dockerfile'))![1]!;
  assert.ok(
    readme.includes(`\`ENTRYPOINT ${JSON.stringify(JSON.parse(entrypoint)).replaceAll(',', ', ')}\``),
    `README quotes ENTRYPOINT ${entrypoint}`,
  );
  const configPath = /name: SIGHTLINE_CONFIG\s+value: (\S+)/.exec(read('helm/sightline/templates/_helpers.tpl'))![1]!;
  assert.ok(readme.includes(`\`${configPath}\``), `README names ${configPath}`);
  assert.ok(read('helm/sightline/values.yaml').includes(configPath), `values.yaml names ${configPath}`);
  assert.doesNotMatch(read('helm/sightline/values.yaml'), /\/etc\/sightline\/config\.yaml/);
});
