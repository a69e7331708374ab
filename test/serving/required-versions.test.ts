/** What a server must hold for a model: the one rule, with a shadow's and a canary's candidate as one more version each. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requiredVersions, type ModelPointers } from '../../src/serving/index.js';

const pointers = (p: Partial<ModelPointers>): ModelPointers => ({
  active: 3,
  rollback: 2,
  versions: new Set([1, 2, 3, 4, 5]),
  shadow: null,
  canary: null,
  ...p,
});

test('active first, then the warm rollback target, the shadow candidate and the canary, each once', () => {
  assert.deepEqual(requiredVersions(pointers({}), true), [3, 2]);
  assert.deepEqual(requiredVersions(pointers({}), false), [3]);
  assert.deepEqual(
    requiredVersions(
      pointers({ shadow: { id: 1, version: 4, share: 0.1 }, canary: { id: 2, version: 5, share: 0.1 } }),
      false,
    ),
    [3, 4, 5],
  );
  assert.deepEqual(
    requiredVersions(pointers({ shadow: { id: 1, version: 3, share: 1 } }), true),
    [3, 2],
    'a version shadowing itself is held once',
  );
  assert.deepEqual(requiredVersions(pointers({ active: null, rollback: null }), true), []);
});
