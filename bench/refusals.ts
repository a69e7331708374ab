/**
 * Refusals must cost little. Clients that retry a RESOURCE_EXHAUSTED call at once, at 3 × the load
 * that saturates the server (its admission limit in closed-loop clients), against the same server
 * saturated by well-behaved load. Goodput must stay at 0.85 of the saturation throughput.
 */
import { measureLoad, startBenchServer, type MeasuredLoad } from './e2e.js';

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);

export async function refusalStorm(
  modelPath: string,
  labels: string | undefined,
  imagePath: string,
  durationMs: number,
): Promise<{ lines: string[]; target: string }> {
  const srv = await startBenchServer(modelPath, labels);
  const limit = srv.config.pool.workers + srv.config.pool.maxQueue;
  // Server CPU (this process) per answered image.
  const perOk = (c: NodeJS.CpuUsage, l: MeasuredLoad) =>
    (c.user + c.system) / 1000 / (l.throughput * (durationMs / 1000));
  try {
    let c0 = process.cpuUsage();
    const sat = await measureLoad(srv, imagePath, limit, durationMs);
    const satCpu = perOk(process.cpuUsage(c0), sat);
    c0 = process.cpuUsage();
    const storm = await measureLoad(srv, imagePath, 3 * limit, durationMs);
    const stormCpu = perOk(process.cpuUsage(c0), storm);
    const refused = storm.errors['8'] ?? 0;
    const ratio = storm.throughput / sat.throughput;
    const lines = [
      '## Refusals under a retry storm',
      '',
      `yolox_nano, bus.jpg, default configuration (admission limit ${limit}). Saturation: ` +
        `${limit} closed-loop clients. Storm: ${3 * limit} clients that resend a refused ` +
        `call at once. Every refusal carries the retry-after-ms and grpc-retry-pushback-ms ` +
        `trailers; these clients ignore them.`,
      '',
      '| load | OK img/s | p50 | p99 | refused /s | server CPU ms per OK | event-loop p99 |',
      '|---|---|---|---|---|---|---|',
      `| saturation, ${limit} clients | ${f1(sat.throughput)} | ${f1(sat.p50)} | ` +
        `${f1(sat.p99)} | ${f1((sat.errors['8'] ?? 0) / (durationMs / 1000))} | ${f1(satCpu)} | ` +
        `${f2(sat.eldP99)} |`,
      `| storm, ${3 * limit} clients retrying at once | ${f1(storm.throughput)} | ` +
        `${f1(storm.p50)} | ${f1(storm.p99)} | ${f1(refused / (durationMs / 1000))} ` +
        `| ${f1(stormCpu)} | ${f2(storm.eldP99)} |`,
    ];
    return {
      lines,
      target:
        `| goodput under a retry storm (3 × saturating load, immediate retries) ` +
        `≥ 0.85 × saturation | ${f1(storm.throughput)} vs ${f1(sat.throughput)} img/s | ` +
        `≥ 0.85 | ${f2(ratio)} ${ratio >= 0.85 ? 'yes' : '**no**'} |`,
    };
  } finally {
    await srv.close();
  }
}
