/** Client side of bench/grpc-floor.ts: `calls` echo calls back to back; answers the median latency. */
import { floorClient } from './grpc-floor.js';
import { median } from './stats.js';

const [port, bytes, calls] = process.argv.slice(2).map(Number);
const client = floorClient(port!);
const payload = Buffer.alloc(bytes!, 7);
const call = () => client.echo(payload);
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
