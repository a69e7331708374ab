/** A replica's token sync: periodic, plus on demand at most once per gap, one call at a time. */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { TokenDigest } from '../../src/registry/index.js';
import { TokenSync } from '../../src/serving/index.js';
import { createLogger } from '../../src/telemetry/logger.js';

const GAP = 150;

/** A registry stand-in that counts SyncTokens calls; `hold` keeps the next call open until released. */
function registry() {
  const calls: number[] = [];
  let release: (() => void) | null = null;
  let fail = false;
  let holdNext = false;
  const t0 = Date.now();
  return {
    calls,
    fetch: async (): Promise<TokenDigest[]> => {
      calls.push(Date.now() - t0);
      if (release === null && holdNext) await new Promise<void>((r) => (release = r));
      if (fail) throw new Error('registry unreachable');
      return [];
    },
    hold: () => (holdNext = true),
    release: () => {
      holdNext = false;
      release?.();
      release = null;
    },
    failing: (f: boolean) => (fail = f),
  };
}

test('on-demand syncs: at once after the gap, else one trailing sync at its end; never two at a time', async (t) => {
  const reg = registry();
  let applied = 0;
  const sync = new TokenSync({
    fetch: reg.fetch,
    apply: () => applied++,
    intervalMs: 60_000,
    minGapMs: GAP,
    log: createLogger('silent'),
  });
  t.after(() => sync.stop());
  await sync.start();
  assert.deepEqual([reg.calls.length, applied], [1, 1], 'the first sync runs at start');

  // Within the gap after the first sync: many requests, one sync at the gap's end.
  for (let i = 0; i < 5; i++) sync.request();
  assert.equal(reg.calls.length, 1, 'no sync inside the gap');
  await sleep(GAP + 60);
  assert.equal(reg.calls.length, 2, 'one trailing sync for five requests');
  assert.ok(reg.calls[1]! >= GAP - 5, `the trailing sync waited for the gap (at ${reg.calls[1]} ms)`);

  // After the gap: at once; while that call is open, more requests add nothing.
  await sleep(GAP + 10);
  reg.hold();
  sync.request();
  assert.equal(reg.calls.length, 2, 'the sync starts on the next tick');
  await sleep(5);
  assert.equal(reg.calls.length, 3, 'a request after the gap syncs at once');
  await sleep(GAP + 10);
  sync.request();
  sync.request();
  await sleep(20);
  assert.equal(reg.calls.length, 3, 'no second call while one is open');
  reg.release();
  await sleep(5);
  assert.equal(applied, 3);
});

test('a failed sync keeps the last copy and is retried on the next request; stop() cancels a pending one', async (t) => {
  const reg = registry();
  const copies: TokenDigest[][] = [];
  const sync = new TokenSync({
    fetch: reg.fetch,
    apply: (d) => copies.push(d),
    intervalMs: 60_000,
    minGapMs: GAP,
    log: createLogger('silent'),
  });
  t.after(() => sync.stop());
  reg.failing(true);
  await sync.start();
  assert.deepEqual(
    [reg.calls.length, copies.length],
    [1, 0],
    'a failed first sync leaves the copy as it was, and start() does not throw',
  );
  reg.failing(false);
  await sleep(GAP + 10);
  sync.request();
  await sleep(10);
  assert.deepEqual([reg.calls.length, copies.length], [2, 1]);
  sync.request(); // inside the gap: pending
  sync.stop();
  await sleep(GAP + 30);
  assert.equal(reg.calls.length, 2, 'nothing runs after stop()');
});
