/** Client side of bench/grpc-floor.ts: `calls` echo calls back to back; answers the median latency. */
import { credentials, makeGenericClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { ECHO } from './grpc-floor.js';
import { median } from './stats.js';

const [port, bytes, calls] = process.argv.slice(2).map(Number);
const Client = makeGenericClientConstructor(ECHO, 'Floor');
const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });
const payload = Buffer.alloc(bytes!, 7);
const call = () =>
  new Promise<void>((resolve, reject) =>
    (client as unknown as { echo: (b: Buffer, cb: (e: ServiceError | null) => void) => void }).echo(payload, (e) => (e ? reject(e) : resolve())),
  );
for (let i = 0; i < 10; i++) await call(); // connect and warm up
const lat: number[] = [];
for (let i = 0; i < calls!; i++) {
  const t0 = performance.now();
  await call();
  lat.push(performance.now() - t0);
}
client.close();
process.send!({ p50: median(lat) });
process.disconnect();
