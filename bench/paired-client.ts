/**
 * One Detect call per request from the parent (IPC), for the c=1 pairs: the parent alternates a call
 * with a measurement of preprocessing + raw inference alone, so both see the same machine (a shared
 * machine drifts by several ms between phases measured minutes apart). Right after each Detect it
 * sends the same bytes to a bare grpc-js echo method in the server's process (bench/grpc-floor.ts):
 * what any Node gRPC server would pay for the round trip at that moment. Answers both latencies,
 * measured here, around the calls only.
 */
import { credentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import { DetectorClient } from '../src/generated/sightline/v1/detector.js';
import { floorClient } from './grpc-floor.js';

const [address, imagePath, floorPort] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const client = new DetectorClient(address!, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
const floor = floorClient(Number(floorPort));
const echo = () => floor.echo(image);
// Connect and warm both paths.
for (let i = 0; i < 3; i++) {
  await detect(client, { image });
  await echo();
}

process.on('message', async (msg: { type: 'call' } | { type: 'close' }) => {
  if (msg.type === 'close') {
    client.close();
    floor.close();
    process.disconnect();
    return;
  }
  let t0 = performance.now();
  const r = await detect(client, { image }, { deadlineMs: 60_000 });
  const ms = performance.now() - t0;
  t0 = performance.now();
  await echo();
  const floorMs = performance.now() - t0;
  const t = r.timing;
  process.send!({
    type: 'result',
    ms,
    floorMs,
    serverMs: t?.totalMs ?? Number.NaN,
    preMs: t ? t.decodeMs + t.preprocessMs : Number.NaN,
    inferenceMs: t?.inferenceMs ?? Number.NaN,
  });
});
process.send!({ type: 'ready' });
