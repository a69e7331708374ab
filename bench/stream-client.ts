/**
 * Live-video stream load, run as a separate process so its work does not disturb the server's event
 * loop: first `probe` unary Detect calls one at a time (warm-up, and the server's inference time with
 * nothing else running), then one Detect stream with the `latest` drop policy and `maxInFlight` frames
 * in flight, fed the image at a fixed `fps` for `durationMs` by a timer (sends never wait for
 * responses). A frame's age is its delivery time minus its send time, for delivered frames only.
 *
 * Usage: stream-client.js ADDRESS IMAGE FPS DURATION_MS MAX_IN_FLIGHT [PROBE]
 * Prints one JSON line (StreamReport).
 */
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { detect } from '../src/cli/client.js';
import {
  DetectorClient,
  DropPolicy,
  type DetectRequest,
  type DetectResponse,
} from '../src/generated/sightline/v1/detector.js';
import { median, summarize } from './stats.js';

export interface StreamReport {
  fps: number;
  maxInFlight: number;
  seconds: number;
  sent: number;
  delivered: number;
  dropped: number;
  /** Frames sent but never answered (the stream ended early): should be 0. */
  unanswered: number;
  deliveredFps: number;
  dropRate: number;
  ageP50: number;
  ageP90: number;
  ageP99: number;
  ageMax: number;
  /**
   * Frame age minus the server's total_ms for that frame, p50 / p99: time outside detect() (the
   * request's bytes in transit over the stream, waiting for an in-flight slot, the response's trip).
   */
  outsideP50: number;
  outsideP99: number;
  /** Median server-reported timing.inference_ms of the probe calls (alone) and of delivered frames. */
  probeInferenceMs: number;
  probeTotalMs: number;
  streamInferenceMs: number;
  streamTotalMs: number;
  /** Timer lateness of sends (how far behind the fixed schedule a frame went out), p99 ms. */
  sendLagP99: number;
  /** Sends where call.write() returned false (HTTP/2 flow control pushing back). */
  backpressured: number;
  error: string | null;
  clientCpuMs: number;
}

const [address, imagePath, fpsS, durationS, mifS, probeS] = process.argv.slice(2);
const image = readFileSync(imagePath!);
const fps = Number(fpsS);
const durationMs = Number(durationS);
const maxInFlight = Number(mifS ?? 1);
const probe = Number(probeS ?? 10);
const client = new DetectorClient(address!, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 << 20 });

// Warm the connection and the path, then measure inference with nothing else running.
const probeInf: number[] = [];
const probeTotal: number[] = [];
await detect(client, { image });
for (let i = 0; i < probe; i++) {
  const r = await detect(client, { image }, { deadlineMs: 30_000 });
  probeInf.push(r.timing?.inferenceMs ?? Number.NaN);
  probeTotal.push(r.timing?.totalMs ?? Number.NaN);
}

const cpu0 = process.cpuUsage();
const call = client.stream();
const sentAt: number[] = [];
const deliveredAge: number[] = [];
const streamInf: number[] = [];
const streamTotal: number[] = [];
const outside: number[] = [];
const sendLag: number[] = [];
let dropped = 0;
let answered = 0;
let backpressured = 0;
call.on('data', (r: DetectResponse) => {
  const now = performance.now();
  answered++;
  if (r.dropped) {
    dropped++;
    return;
  }
  const age = now - sentAt[Number(r.frameId)]!;
  deliveredAge.push(age);
  outside.push(age - (r.timing?.totalMs ?? Number.NaN));
  streamInf.push(r.timing?.inferenceMs ?? Number.NaN);
  streamTotal.push(r.timing?.totalMs ?? Number.NaN);
});
const done = new Promise<ServiceError | null>((resolve) => {
  call.on('error', (e: ServiceError) => resolve(e));
  call.on('end', () => setImmediate(() => resolve(null)));
});

const period = 1000 / fps;
const total = Math.round((durationMs / 1000) * fps);
const t0 = performance.now() + 20;
let lastDelivery = t0;
call.on('data', () => (lastDelivery = performance.now()));

await new Promise<void>((resolve) => {
  let i = 0;
  const tick = () => {
    // Send every frame that is due (a late timer sends the backlog at once, as a camera buffer would).
    while (i < total && performance.now() >= t0 + i * period) {
      const now = performance.now();
      sendLag.push(now - (t0 + i * period));
      const req: DetectRequest = {
        model: '',
        version: '',
        image,
        confidenceThreshold: 0,
        iouThreshold: 0,
        maxDetections: 0,
        classes: [],
        agnosticNms: false,
        frameId: BigInt(i),
      };
      if (i === 0) req.streamOptions = { dropPolicy: DropPolicy.DROP_POLICY_LATEST, maxInFlight };
      sentAt[i] = now;
      if (!call.write(req)) backpressured++;
      i++;
    }
    if (i >= total) return resolve();
    setTimeout(tick, Math.max(0, t0 + i * period - performance.now()));
  };
  setTimeout(tick, Math.max(0, t0 - performance.now()));
});
const sendEnd = performance.now();
call.end();
const err = await done;
const cpu = process.cpuUsage(cpu0);
client.close();

// Delivered fps over the sending window (frames keep arriving for one service time after it).
const seconds = (Math.max(sendEnd, lastDelivery) - t0) / 1000;
const age = summarize(deliveredAge);
const report: StreamReport = {
  fps,
  maxInFlight,
  seconds,
  sent: total,
  delivered: deliveredAge.length,
  dropped,
  unanswered: total - answered,
  deliveredFps: deliveredAge.length / seconds,
  dropRate: dropped / total,
  ageP50: age.p50,
  ageP90: age.p90,
  ageP99: age.p99,
  ageMax: Math.max(...deliveredAge),
  outsideP50: summarize(outside).p50,
  outsideP99: summarize(outside).p99,
  probeInferenceMs: median(probeInf),
  probeTotalMs: median(probeTotal),
  streamInferenceMs: median(streamInf),
  streamTotalMs: median(streamTotal),
  sendLagP99: summarize(sendLag).p99,
  backpressured,
  error: err ? `${err.code} ${err.details}` : null,
  clientCpuMs: (cpu.user + cpu.system) / 1000,
};
process.stdout.write(JSON.stringify(report) + '\n');
