/**
 * What a shadow costs live traffic: the server with its default, machine-sized configuration (role
 * all, in this process), closed-loop load from a client process (bench/load-client.ts) at
 * `concurrency`, in alternating rounds without a shadow and with a shadow of the active version itself
 * at sample 1.0 (every live request offered to it), so that slow drift in the load of a shared machine
 * hits both alike. Reports live p50/p99 of the calls of all rounds of each kind pooled (a p99 over a
 * few thousand calls; the median of per-round p99s moved 1.05-1.14 between identical runs), throughput
 * (median over rounds), failed calls, and what became of the sampled requests (compared, or dropped for
 * want of idle capacity: each one counted).
 * Target: live p99 with the shadow within 10 % of live p99 without it.
 */
import { measureLoad, startBenchServer, type MeasuredLoad } from './e2e.js';
import { median, summarize } from './stats.js';

export interface ShadowBenchOptions {
  modelPath: string;
  labels?: string;
  imagePath: string;
  concurrency: number;
  /** Length of each run; there are `rounds` runs without and `rounds` with the shadow. */
  phaseMs: number;
  rounds: number;
  /** Whether the 10 % target applies (the issue's case); otherwise the ratio is only reported. */
  judged: boolean;
}

export interface ShadowBenchResult {
  lines: string[];
  /** A row of `| target | measured | goal | met |`. */
  target: string;
}

const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '–');
const errorsOf = (runs: MeasuredLoad[]) =>
  runs.reduce((n, r) => n + Object.values(r.errors).reduce((a, b) => a + b, 0), 0);

export async function shadowOverhead(o: ShadowBenchOptions): Promise<ShadowBenchResult> {
  const s = await startBenchServer(o.modelPath, o.labels);
  const registry = s.app.registry!;
  const operator = { actor: 'bench', peer: '' };
  const off: MeasuredLoad[] = [];
  const on: MeasuredLoad[] = [];
  try {
    await measureLoad(s, o.imagePath, o.concurrency, Math.min(2000, o.phaseMs)); // warm the path
    for (let r = 0; r < o.rounds; r++) {
      off.push(await measureLoad(s, o.imagePath, o.concurrency, o.phaseMs));
      await registry.startShadow('bench', 1, 1, operator, 'bench');
      on.push(await measureLoad(s, o.imagePath, o.concurrency, o.phaseMs));
      await registry.stopShadow('bench', operator, 'bench');
    }
    // Every replica's final tally arrives with its next report.
    await new Promise((r) => setTimeout(r, s.config.fleet.reportIntervalMs + 500));
    const shadows = registry.shadowReport('bench');
    const sampled = Math.round(on.at(-1)!.throughput * (o.phaseMs / 1000));
    const pooledOff = summarize(off.flatMap((r) => r.lat));
    const pooledOn = summarize(on.flatMap((r) => r.lat));
    const p99Off = pooledOff.p99;
    const p99On = pooledOn.p99;
    const sum = shadows.summary;
    const lines = [
      `## Shadow traffic at concurrency ${o.concurrency}`,
      '',
      `A shadow of the active version against itself at sample 1.0 (every live request offered ` +
        `to it), ${o.modelPath.split('/').pop()}, ${o.concurrency} closed-loop clients on bus.jpg, ` +
        `${o.rounds} alternating rounds of ${o.phaseMs / 1000} s without and with it (latencies of all ` +
        `rounds of each kind pooled; throughput the median over rounds). Shadow runs use idle capacity ` +
        `only; the rest are dropped and counted.`,
      '',
      '| | live throughput | live p50 | live p99 | failed calls |',
      '|---|---|---|---|---|',
      `| without shadow | ${f1(median(off.map((r) => r.throughput)))}/s | ${f1(pooledOff.p50)} ms | ` +
        `${f1(p99Off)} ms | ${errorsOf(off)} |`,
      `| with shadow (sample 1.0) | ${f1(median(on.map((r) => r.throughput)))}/s | ` +
        `${f1(pooledOn.p50)} ms | ${f1(p99On)} ms | ${errorsOf(on)} |`,
      '',
      `Last round's shadow (${shadows.trial.id}): ${sum.samples} compared (agreement ${sum.agreementMean?.toFixed(3) ?? '–'}), ${sum.droppedTotal} dropped (${
        Object.entries(sum.dropped)
          .map(([k, n]) => `${n} ${k}`)
          .join(', ') || 'none'
      }), ${sum.failed} failed, of about ${sampled} live calls in that round.`,
    ];
    const ratio = p99On / p99Off;
    const measured = `${f1(p99On)} vs ${f1(p99Off)} ms (${ratio.toFixed(2)} ×), ${errorsOf(on)} failed`;
    return {
      lines,
      target: o.judged
        ? `| live p99 at concurrency ${o.concurrency} with a shadow at sample 1.0 ≤ 1.1 × without | ${measured} | ` +
          `≤ 1.10 × | ${ratio <= 1.1 && errorsOf(on) === 0 ? 'yes' : '**no**'} |`
        : `| live p99 at concurrency ${o.concurrency} with a shadow at sample 1.0, against without ` +
          `(reported, no target) | ${measured} | – | – |`,
    };
  } finally {
    await s.close();
  }
}
