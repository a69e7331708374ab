// ESLint (flat config): the recommended JavaScript and typescript-eslint rules, plus the architecture
// as an import boundary rule. `npm run lint`; .ci/run runs it. Formatting is Prettier's (npm run format).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import globals from 'globals';
import { readFileSync } from 'node:fs';
import tseslint from 'typescript-eslint';

/**
 * The layering of test/architecture/layers.test.ts, from the same table: each src/ area may import only
 * the areas it lists, so every other area is a `from` of a zone whose target is this area.
 */
const { allowed } = JSON.parse(readFileSync(new URL('./test/architecture/layers.json', import.meta.url), 'utf8'));
const FILE_AREAS = { errors: './src/errors.ts', identifiers: './src/identifiers.ts', main: './src/main.ts' };
const pathOf = (area) => FILE_AREAS[area] ?? `./src/${area}`;
const areas = [...Object.keys(allowed), 'generated'];
const layerZones = Object.entries(allowed).map(([area, may]) => ({
  target: pathOf(area),
  from: areas.filter((other) => other !== area && !may.includes(other)).map(pathOf),
  message: `src/${area} ${may.length ? `may import only ${may.join(', ')}` : 'may import no other area'} (test/architecture/layers.json)`,
}));

export default defineConfig(
  { ignores: ['dist/', 'src/generated/', 'src/**/*-wasm.ts', 'node_modules/', '.cache/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    plugins: { 'import-x': importX },
    settings: {
      // Sources import './x.js' for './x.ts' (NodeNext ESM).
      'import-x/resolver-next': [
        createNodeResolver({ extensions: ['.ts', '.js', '.mjs', '.json'], extensionAlias: { '.js': ['.ts', '.js'] } }),
      ],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones: layerZones }],
      // `_`-prefixed parameters are unused on purpose (an interface's signature).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // A cleanup registered before the value exists (t.after, a timer's handler) reads a `let` first.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Lines stay readable. Prettier wraps code at 120 but leaves long strings, comments and regular
      // expressions alone: wrap those by hand (split a string with +, a regular expression with
      // new RegExp(a.source + b.source)). ESLint's own rule: deprecated for @stylistic's, but kept until
      // ESLint 11, so no extra dependency yet.
      'max-len': ['error', { code: 160 }],
    },
  },
  {
    // Untyped documents the tests walk by path: rendered Kubernetes manifests (YAML), and the answers of
    // protocol clients built at run time (@grpc/proto-loader's OIP client, JSON over HTTP), which are
    // deliberately not Sightline's generated types.
    files: ['test/helm/**', 'test/transport/oip-grpc.test.ts', 'test/transport/http.test.ts', 'test/e2e/batch.test.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
