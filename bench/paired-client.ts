/**
 * One Detect call per request from the parent (IPC), for the c=1 pairs: the parent alternates a call
 * with a measurement of preprocessing + raw inference alone, so both see the same machine (a shared
 * machine drifts by several ms between phases measured minutes apart). Answers each call's latency,
 * measured here, around the call only.
 */
import { credentials } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import { DetectorClient } from '../src/generated/sightline/v1/detector.js';

const [address, imagePath] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const client = new DetectorClient(address!, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
await detect(client, { image }); // connect and warm the path

process.on('message', async (msg: { type: 'call' } | { type: 'close' }) => {
  if (msg.type === 'close') {
    client.close();
    process.disconnect();
    return;
  }
  const t0 = performance.now();
  const r = await detect(client, { image }, { deadlineMs: 60_000 });
  const ms = performance.now() - t0;
  const t = r.timing;
  process.send!({ type: 'result', ms, serverMs: t?.totalMs ?? Number.NaN, preMs: t ? t.decodeMs + t.preprocessMs : Number.NaN, inferenceMs: t?.inferenceMs ?? Number.NaN });
});
process.send!({ type: 'ready' });
