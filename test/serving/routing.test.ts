/** A canary's split: the same request always falls on the same side, and requests spread evenly. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestBucket } from '../../src/serving/index.js';

test('a request id always maps to the same bucket, and ids spread evenly over [0, 1)', () => {
  const none = new Uint8Array(0);
  assert.equal(
    requestBucket('req-41', none),
    requestBucket('req-41', new Uint8Array([1, 2, 3])),
    'the key wins over the image',
  );
  const n = 10_000;
  const buckets = Array.from({ length: n }, (_, i) => requestBucket(`req-${i}`, none));
  assert.ok(buckets.every((b) => b >= 0 && b < 1));
  const below10 = buckets.filter((b) => b < 0.1).length / n;
  const below50 = buckets.filter((b) => b < 0.5).length / n;
  assert.ok(Math.abs(below10 - 0.1) < 0.015 && Math.abs(below50 - 0.5) < 0.02, `shares ${below10}, ${below50}`);
});

test('without an id the image is the key: the same bytes land alike, large images by their windows', () => {
  const big = new Uint8Array(1 << 20).map((_, i) => (i * 7919) & 0xff);
  const copy = big.slice();
  assert.equal(requestBucket(undefined, big), requestBucket(undefined, copy));
  copy[copy.length - 1] ^= 1; // the last window covers the last byte
  assert.notEqual(requestBucket(undefined, big), requestBucket(undefined, copy));
  assert.notEqual(
    requestBucket(undefined, new Uint8Array([1, 2, 3])),
    requestBucket(undefined, new Uint8Array([1, 2, 4])),
  );
});
