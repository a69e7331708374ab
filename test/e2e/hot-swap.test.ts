/** Promote and rollback under steady load: zero failed requests, and the switch happens exactly at the swap. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { detect } from '../../src/cli/client.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient, uploadFile } from '../support/registry.js';
import { startTestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('hot-swap');

interface Sample {
  start: number;
  end: number;
  version: string;
  error?: string;
}

describe('hot swap under load', { skip: !haveData }, () => {
  test('yolov8n_int8 -> yolo11n_int8_320 -> rollback -> promote, three times: no failed request', async () => {
    const srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolov8n_int8.onnx') }],
      pool: { workers: 2, warmupRuns: 1, maxQueue: 64 },
    });
    const reg = registryClient(srv.address);
    try {
      await uploadFile(reg, modelPath('yolo11n_int8_320.onnx'), { model: 'det' });
      const bus = readFileSync(imagePath('bus.jpg'));
      const samples: Sample[] = [];
      let running = true;
      const loop = async () => {
        while (running) {
          const start = performance.now();
          try {
            const r = await detect(srv.client, { image: bus }, { deadlineMs: 30_000 });
            samples.push({ start, end: performance.now(), version: r.version });
            assert.ok(
              r.detections.some((d) => d.label === 'bus'),
              `version ${r.version} found the bus`,
            );
          } catch (e) {
            samples.push({ start, end: performance.now(), version: '?', error: String(e) });
          }
        }
      };
      const loops = Array.from({ length: 4 }, loop);
      const swaps: { sent: number; returned: number; active: string }[] = [];
      // Each swap waits until at least 3 requests ran wholly after the previous one returned (at
      // least 600 ms; on a slow machine longer), so every window below has requests to check.
      const swap = async (fn: () => Promise<{ activeVersion: number }>) => {
        const since = swaps.at(-1)?.returned ?? -Infinity;
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, 600));
        while (samples.filter((s) => s.start >= since).length < 3 && performance.now() - t0 < 10_000)
          await new Promise((r) => setTimeout(r, 50));
        const sent = performance.now();
        const st = await fn();
        swaps.push({ sent, returned: performance.now(), active: String(st.activeVersion) });
      };
      for (let i = 0; i < 3; i++) {
        await swap(() => call(reg, reg.promote, { model: 'det', version: 2, reason: `cycle ${i}` }));
        await swap(() => call(reg, reg.rollback, { model: 'det', reason: `cycle ${i}` }));
      }
      await new Promise((r) => setTimeout(r, 250));
      running = false;
      await Promise.all(loops);

      const failed = samples.filter((s) => s.error);
      assert.equal(failed.length, 0, `failed requests: ${failed.map((f) => f.error).join('; ')}`);
      assert.ok(samples.length >= 20, `only ${samples.length} requests ran`);
      assert.ok(samples.every((s) => s.version === '1' || s.version === '2'));
      assert.deepEqual(
        swaps.map((s) => s.active),
        ['2', '1', '2', '1', '2', '1'],
      );
      // Between two swaps, requests that started after the first returned and ended before the next
      // was sent must all name the version the first swap made active; before the first swap, '1'.
      const windows = [
        { from: -Infinity, to: swaps[0]!.sent, want: '1' },
        ...swaps.map((s, i) => ({ from: s.returned, to: swaps[i + 1]?.sent ?? Infinity, want: s.active })),
      ];
      let checked = 0;
      for (const w of windows) {
        const inside = samples.filter((s) => s.start >= w.from && s.end <= w.to);
        for (const s of inside)
          assert.equal(
            s.version,
            w.want,
            `request in [${w.from.toFixed(0)}, ${w.to.toFixed(0)}] answered by version ${s.version}`,
          );
        checked += inside.length;
      }
      assert.ok(
        checked >= 10,
        `only ${checked} of ${samples.length} requests fell cleanly between swaps: the check would be vacuous`,
      );
      console.log(
        `# hot swap: ${samples.length} requests, 0 failed, ${swaps.length} swaps; promote took ${swaps
          .filter((_, i) => i % 2 === 0)
          .map((s) => (s.returned - s.sent).toFixed(0))
          .join(', ')} ms; rollback ${swaps
          .filter((_, i) => i % 2 === 1)
          .map((s) => (s.returned - s.sent).toFixed(0))
          .join(', ')} ms`,
      );
    } finally {
      reg.close();
      await srv.close();
    }
  });
});
