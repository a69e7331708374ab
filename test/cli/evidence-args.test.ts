/**
 * The parsers of the evidence commands' arguments, called directly: a canary's --canary (a percent), a
 * shadow's --sample (a fraction or a percent) and --dataset NAME[@VERSION]. What a user could mistype
 * is refused with a one-line message that says what they likely meant.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgumentError } from 'commander';
import { datasetRef, percentArg, sampleArg } from '../../src/cli/commands/evidence.js';

const refused = (fn: () => unknown, message: string | RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof InvalidArgumentError, String(e));
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    assert.ok(!e.message.includes('\n'), 'one line');
    return true;
  });

describe('percentArg (promote --canary)', () => {
  test('a percent with or without the sign', () => {
    assert.deepEqual(
      ['10%', '10', ' 50 % ', '1', '99.5%', '0.1%', '.5%'].map(percentArg),
      [10, 10, 50, 1, 99.5, 0.1, 0.5],
    );
  });

  test('a bare number below 1 is ambiguous: refused, saying what it would mean and what was likely meant', () => {
    refused(() => percentArg('0.1'), '0.1 means 0.1 %; write 0.1% to confirm or 10% for a tenth');
    refused(() => percentArg('0.25'), '0.25 means 0.25 %; write 0.25% to confirm or 25% for 0.25 of the requests');
  });

  test('out of (0, 100) or not a number', () => {
    for (const v of ['0', '0%', '100', '100%', '150', '-5', 'ten', '10%%', '', '1e1', 'NaN', 'Infinity'])
      refused(() => percentArg(v), `expected a share of requests above 0 % and below 100 %, such as 10%, got "${v}"`);
  });
});

describe('sampleArg (shadow start --sample)', () => {
  test('a fraction, or a percent', () => {
    assert.deepEqual(['0.1', '1', '.25', '10%', '100%', '0.5%'].map(sampleArg), [0.1, 1, 0.25, 0.1, 1, 0.005]);
  });

  test('a bare number above 1 is refused with the percent it likely meant', () => {
    refused(() => sampleArg('10'), '--sample is a fraction of requests in (0, 1]; for 10 %, write 10% or 0.1');
    refused(() => sampleArg('100'), '--sample is a fraction of requests in (0, 1]; for 100 %, write 100% or 1');
  });

  test('out of (0, 1] or not a number', () => {
    for (const v of ['0', '0%', '101%', '250', '-0.1', 'all', ''])
      refused(() => sampleArg(v), `expected a share of requests above 0 and at most 1, such as 0.1 or 10%, got "${v}"`);
  });
});

describe('datasetRef (evaluate --dataset)', () => {
  test('NAME is the latest version (0), NAME@N version N', () => {
    assert.deepEqual(datasetRef('coco128'), { dataset: 'coco128', datasetVersion: 0 });
    assert.deepEqual(datasetRef('coco128@2'), { dataset: 'coco128', datasetVersion: 2 });
    assert.deepEqual(datasetRef('golden.v2-set@17'), { dataset: 'golden.v2-set', datasetVersion: 17 });
  });

  test('an empty name, a version that is not a number from 1, or two @ are refused', () => {
    for (const v of [
      '',
      '@2',
      'coco128@',
      'coco128@0',
      'coco128@latest',
      'coco128@-1',
      'a@1@2',
      'coco128@1.5',
      'my set',
    ])
      refused(
        () => datasetRef(v),
        /^expected NAME or NAME@VERSION \(a version number from 1, as `dataset list` shows\), such as coco128@2, got "/,
      );
  });
});
