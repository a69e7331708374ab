/** Class-name parsing: Ultralytics' Python dict literal, list form, and labels files. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { labelFor, parseLabelsFile, parseUltralyticsNames } from '../../../src/inference/families/index.js';

describe('parseUltralyticsNames', () => {
  test('Python dict literal with single quotes', () => {
    assert.deepEqual(parseUltralyticsNames("{0: 'person', 1: 'bicycle', 2: 'traffic light'}"), [
      'person',
      'bicycle',
      'traffic light',
    ]);
  });

  test('double quotes, escaped quotes and backslashes', () => {
    assert.deepEqual(
      parseUltralyticsNames(`{0: "a 'quoted' one", 1: 'it\\'s', 2: "say \\"hi\\"", 3: 'back\\\\slash'}`),
      ["a 'quoted' one", "it's", 'say "hi"', 'back\\slash'],
    );
  });

  test('\\x and \\u escapes, as Python repr writes non-ASCII names', () => {
    assert.deepEqual(parseUltralyticsNames("{0: 'caf\\xe9', 1: '\\u4eba'}"), ['café', '人']);
    assert.deepEqual(parseUltralyticsNames("{0: 'café', 1: '人'}"), ['café', '人']);
  });

  test('keys in any order, trailing comma, newlines, quoted (JSON-style) keys', () => {
    assert.deepEqual(parseUltralyticsNames("{\n  1: 'b',\n  0: 'a',\n}"), ['a', 'b']);
    assert.deepEqual(parseUltralyticsNames('{"0": "a", "1": "b"}'), ['a', 'b']);
  });

  test('list form', () => {
    assert.deepEqual(parseUltralyticsNames("['a', \"b\", 'c d']"), ['a', 'b', 'c d']);
    assert.deepEqual(parseUltralyticsNames('[]'), []);
  });

  test('refuses what it cannot read faithfully', () => {
    for (const bad of [
      '',
      'person',
      '{0: person}',
      "{0: 'a', 2: 'c'}",
      "{0: 'a', 0: 'b'}",
      "{0: 'a'",
      "['a' 'b']",
      "{0: 'a'} x",
      "{-1: 'a'}",
      "{'x': 'a'}",
    ]) {
      assert.equal(parseUltralyticsNames(bad), null, JSON.stringify(bad));
    }
  });

  test('80 COCO names round-trip from a generated literal', () => {
    const names = Array.from({ length: 80 }, (_, i) => `name ${i}`);
    const literal = `{${names.map((n, i) => `${i}: '${n}'`).join(', ')}}`;
    assert.deepEqual(parseUltralyticsNames(literal), names);
  });
});

describe('parseLabelsFile and labelFor', () => {
  test('one per line, trimmed, CRLF, trailing blank lines ignored', () => {
    assert.deepEqual(parseLabelsFile('person\r\n bicycle \ncar\n\n\n'), ['person', 'bicycle', 'car']);
    assert.deepEqual(parseLabelsFile(''), []);
    assert.deepEqual(parseLabelsFile('\ufeffa\nb'), ['a', 'b']);
  });

  test('inner blank lines keep their position', () => {
    assert.deepEqual(parseLabelsFile('a\n\nc\n'), ['a', '', 'c']);
  });

  test('labelFor falls back to class_<id>', () => {
    const names = ['a', '', 'c'];
    assert.equal(labelFor(names, 0), 'a');
    assert.equal(labelFor(names, 1), 'class_1');
    assert.equal(labelFor(names, 7), 'class_7');
  });
});
