/**
 * Load generator, run as a separate process so its work does not disturb the server's event loop:
 * `concurrency` loops each send Detect calls back to back for `durationMs` (or `count` calls in total).
 * Failed calls are retried at once (the next call of the loop): clients that retry RESOURCE_EXHAUSTED
 * immediately. Prints one JSON line: latencies of successful calls, counts of each failure status, and
 * the server's median stage timings (DetectResponse.timing) of the successful ones.
 */
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import { DetectorClient } from '../src/generated/sightline/v1/detector.js';
import { median } from './stats.js';

const [address, imagePath, concurrencyS, durationS, countS, model] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const concurrency = Number(concurrencyS);
const durationMs = Number(durationS);
const count = Number(countS);
const client = new DetectorClient(address!, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });

const lat: number[] = [];
const errors: Record<string, number> = {};
const STAGES = ['decodeMs', 'preprocessMs', 'queueMs', 'inferenceMs', 'postprocessMs', 'totalMs'] as const;
const stages: Record<(typeof STAGES)[number], number[]> = {
  decodeMs: [],
  preprocessMs: [],
  queueMs: [],
  inferenceMs: [],
  postprocessMs: [],
  totalMs: [],
};
let sent = 0;
const t0 = performance.now();
const end = t0 + durationMs;
const more = () => (count > 0 ? sent < count : performance.now() < end);

async function loop(): Promise<void> {
  while (more()) {
    sent++;
    const s = performance.now();
    try {
      const r = await detect(client, { image, model: model ?? '' }, { deadlineMs: 60_000 });
      lat.push(performance.now() - s);
      for (const k of STAGES) stages[k].push(r.timing?.[k] ?? Number.NaN);
    } catch (e) {
      const code = String((e as ServiceError).code);
      errors[code] = (errors[code] ?? 0) + 1;
    }
  }
}

await detect(client, { image, model: model ?? '' }); // connect and warm the path
const start = performance.now();
await Promise.all(Array.from({ length: concurrency }, loop));
const seconds = (performance.now() - start) / 1000;
client.close();
const timing = Object.fromEntries(STAGES.map((k) => [k, median(stages[k])]));
process.stdout.write(JSON.stringify({ lat, errors, seconds, timing }) + '\n');
