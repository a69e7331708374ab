/** RefusalPacer: only a connection that comes back before its retry-after waits, and only for the rest of it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefusalPacer } from '../../src/transport/grpc/refusal-pacing.js';

test('a first refusal, and one to a client that waited as told, are answered at once', () => {
  const p = new RefusalPacer(1000);
  assert.equal(p.hold('a:1', 200, 0), 0);
  assert.equal(p.hold('a:1', 200, 250), 0, 'came back after its 200 ms');
  assert.equal(p.hold('b:1', 200, 260), 0, 'another connection is not held for a:1');
});

test('an early retry waits out the rest of its retry-after; every later early one too', () => {
  const p = new RefusalPacer(1000);
  p.hold('a:1', 200, 0);
  assert.equal(p.hold('a:1', 200, 50), 150, 'refused at 200, when its retry-after ends');
  // That refusal goes out at 200 with a new retry-after of 200: the next early retry waits until 400.
  assert.equal(p.hold('a:1', 200, 210), 190);
});

test('holds never exceed maxHoldMs; 0 turns pacing off', () => {
  const p = new RefusalPacer(100);
  p.hold('a:1', 5000, 0);
  assert.equal(p.hold('a:1', 5000, 10), 100);
  const off = new RefusalPacer(0);
  off.hold('a:1', 5000, 0);
  assert.equal(off.hold('a:1', 5000, 1), 0);
});

test('memory is bounded: beyond maxPeers, connections whose retry-after ended are forgotten first', () => {
  const p = new RefusalPacer(1000, 100);
  for (let i = 0; i < 1000; i++) p.hold(`peer:${i}`, 10, i * 100);
  assert.ok((p as unknown as { until: Map<string, number> }).until.size <= 100);
  // The most recent connection is still remembered.
  assert.equal(p.hold('peer:999', 10, 999 * 100 + 1), 9);
});
