/**
 * What a refused call costs the server: `count` Detect calls with the full image but an out-of-range
 * confidence threshold, `concurrency` at a time. They are received and deserialized in full, then
 * refused before decoding, as a RESOURCE_EXHAUSTED refusal is (admission runs before decoding).
 * Run as a separate process; the caller measures its own (the server's) CPU time around it.
 *
 * Usage: refuse-client.js ADDRESS IMAGE COUNT [CONCURRENCY]
 * Prints one JSON line: { count, seconds, codes }.
 */
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import { DetectorClient } from '../src/generated/sightline/v1/detector.js';

const [address, imagePath, countS, concurrencyS] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const count = Number(countS);
const concurrency = Number(concurrencyS ?? 8);
const client = new DetectorClient(address!, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });

const codes: Record<string, number> = {};
let sent = 0;
const one = async () => {
  try {
    await detect(client, { image, confidenceThreshold: 2 }, { deadlineMs: 30_000 });
    codes.OK = (codes.OK ?? 0) + 1;
  } catch (e) {
    const name = status[(e as ServiceError).code] ?? 'unknown';
    codes[name] = (codes[name] ?? 0) + 1;
  }
};
await detect(client, { image }); // connect and warm the path
const t0 = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (sent < count) {
      sent++;
      await one();
    }
  }),
);
const seconds = (performance.now() - t0) / 1000;
client.close();
process.stdout.write(JSON.stringify({ count, seconds, codes }) + '\n');
