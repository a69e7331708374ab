/**
 * Open-loop overload, run as a separate process so its work does not disturb the server's event loop:
 * unary Detect calls arrive at a fixed `rate` per second, evenly spaced, for `durationMs`, whatever the
 * server does (no limit on calls in flight; a late timer sends the backlog at once). Counts outcomes by
 * gRPC status and records the latency of accepted (OK) calls and the `retry-after-ms` trailers of
 * refused ones.
 *
 * Goodput counts OK responses that complete inside the sending window after its first `warmupMs`
 * (while the queue fills and the first calls finish, nothing can complete yet), per second.
 *
 * Calls go round-robin over `channels` separate connections, as the traffic of many clients would: on
 * one HTTP/2 connection every request, refused or not, queues behind the others' bytes on one socket
 * and one pair of event-loop turns, and the connection rather than the server becomes the bottleneck.
 *
 * Usage: overload-client.js ADDRESS IMAGE RATE DURATION_MS [WARMUP_MS] [CHANNELS]
 * Prints one JSON line (OverloadReport).
 */
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import { DetectorClient } from '../src/generated/sightline/v1/detector.js';
import { median, summarize } from './stats.js';

export interface OverloadReport {
  rate: number;
  durationMs: number;
  channels: number;
  sent: number;
  /** Requests actually sent per second over the window (the client keeping up with the schedule). */
  offeredRate: number;
  /** Outcomes by status name: OK, RESOURCE_EXHAUSTED, others. */
  outcomes: Record<string, number>;
  /** OK responses that completed inside the sending window after its warm-up, per second. */
  goodput: number;
  /** The same as a count, and the seconds it was counted over (to pool several runs). */
  okCounted: number;
  countedSeconds: number;
  /** Latencies of the OK calls, ms. */
  okLat: number[];
  warmupMs: number;
  /** OK responses that completed inside the whole sending window, per second of it. */
  goodputWindow: number;
  /** All OK responses over the time until the last one finished. */
  goodputAll: number;
  okP50: number;
  okP90: number;
  okP99: number;
  okMax: number;
  /** Latency of refusals (how fast RESOURCE_EXHAUSTED comes back), p50 / p99. */
  rejectP50: number;
  rejectP99: number;
  retryAfterMsP50: number;
  /** Medians of the server-reported timing of OK calls: decode + preprocess, queue, inference. */
  okPreprocessMs: number;
  okQueueMs: number;
  okInferenceMs: number;
  /** Timer lateness of sends behind the fixed schedule, p99 ms. */
  sendLagP99: number;
  clientCpuMs: number;
  seconds: number;
}

const [address, imagePath, rateS, durationS, warmupS, channelsS] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const rate = Number(rateS);
const durationMs = Number(durationS);
const warmupMs = Number(warmupS ?? 0);
const channels = Number(channelsS ?? 8);
// A local subchannel pool per client: otherwise grpc-js shares one connection between them.
const clients = Array.from(
  { length: channels },
  () =>
    new DetectorClient(address!, credentials.createInsecure(), {
      'grpc.max_send_message_length': 64 << 20,
      'grpc.use_local_subchannel_pool': 1,
    }),
);

await Promise.all(clients.map((c) => detect(c, { image }))); // connect and warm the path

const okLat: number[] = [];
const okEnd: number[] = [];
const okPre: number[] = [];
const okQueue: number[] = [];
const okInf: number[] = [];
const rejectLat: number[] = [];
const retryAfter: number[] = [];
const outcomes: Record<string, number> = {};
const sendLag: number[] = [];
const pending: Promise<void>[] = [];
const count = (name: string) => (outcomes[name] = (outcomes[name] ?? 0) + 1);

function one(client: DetectorClient): Promise<void> {
  const s = performance.now();
  return detect(client, { image }, { deadlineMs: 30_000 }).then(
    (r) => {
      const e = performance.now();
      okLat.push(e - s);
      okEnd.push(e);
      okPre.push((r.timing?.decodeMs ?? Number.NaN) + (r.timing?.preprocessMs ?? Number.NaN));
      okQueue.push(r.timing?.queueMs ?? Number.NaN);
      okInf.push(r.timing?.inferenceMs ?? Number.NaN);
      count('OK');
    },
    (err: ServiceError) => {
      const name = status[err.code] ?? String(err.code);
      count(name);
      if (err.code === status.RESOURCE_EXHAUSTED) {
        rejectLat.push(performance.now() - s);
        const ra = Number(err.metadata?.get('retry-after-ms')[0]);
        if (Number.isFinite(ra)) retryAfter.push(ra);
      }
    },
  );
}

const cpu0 = process.cpuUsage();
const period = 1000 / rate;
const total = Math.round((durationMs / 1000) * rate);
const t0 = performance.now() + 20;
await new Promise<void>((resolve) => {
  let i = 0;
  const tick = () => {
    while (i < total && performance.now() >= t0 + i * period) {
      sendLag.push(performance.now() - (t0 + i * period));
      pending.push(one(clients[i % channels]!));
      i++;
    }
    if (i >= total) return resolve();
    setTimeout(tick, Math.max(0, t0 + i * period - performance.now()));
  };
  setTimeout(tick, Math.max(0, t0 - performance.now()));
});
const sendEnd = performance.now();
await Promise.all(pending);
const end = performance.now();
const cpu = process.cpuUsage(cpu0);
for (const c of clients) c.close();

const windowEnd = t0 + durationMs;
const ok = summarize(okLat);
const counted = okEnd.filter((t) => t >= t0 + warmupMs && t <= windowEnd).length;
const rej = summarize(rejectLat);
const report: OverloadReport = {
  rate,
  durationMs,
  channels,
  sent: total,
  offeredRate: total / ((sendEnd - t0) / 1000),
  outcomes,
  goodput: counted / ((durationMs - warmupMs) / 1000),
  okCounted: counted,
  countedSeconds: (durationMs - warmupMs) / 1000,
  okLat,
  warmupMs,
  goodputWindow: okEnd.filter((t) => t <= windowEnd).length / (durationMs / 1000),
  goodputAll: okLat.length / ((end - t0) / 1000),
  okP50: ok.p50,
  okP90: ok.p90,
  okP99: ok.p99,
  okMax: okLat.length ? Math.max(...okLat) : Number.NaN,
  rejectP50: rej.p50,
  rejectP99: rej.p99,
  retryAfterMsP50: median(retryAfter),
  okPreprocessMs: median(okPre),
  okQueueMs: median(okQueue),
  okInferenceMs: median(okInf),
  sendLagP99: summarize(sendLag).p99,
  clientCpuMs: (cpu.user + cpu.system) / 1000,
  seconds: (end - t0) / 1000,
};
process.stdout.write(JSON.stringify(report) + '\n');
