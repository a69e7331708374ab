/**
 * Memory over repeated hot swaps: a real `sightline serve` process, three model versions promoted in
 * rotation so every promote loads one version and drains another, RSS read from /proc after each.
 * Used by `npm run bench` (50 promotes) and by a test (fewer).
 */
import { readFileSync } from 'node:fs';
import { serveProcess } from '../test/support/process.js';
import { call, registryClient, uploadFile } from '../test/support/registry.js';
import { tempDataDir } from '../test/support/server.js';
import { rmSync } from 'node:fs';

export interface SwapRss {
  /** RSS with one version loaded (after start), MiB. */
  rssOneVersionMb: number;
  /** Growth from loading one more version: the footprint of one version. */
  versionFootprintMb: number;
  /** RSS in steady state (active + warm rollback target) after the first rotation. */
  rssSteadyMb: number;
  rssAfterMb: number;
  rssMaxMb: number;
  promotes: number;
  samplesMb: number[];
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

export async function measureSwapRss(
  models: { file: string; labels?: string[] }[],
  promotes: number,
  env: Record<string, string> = {},
): Promise<SwapRss> {
  const dataDir = tempDataDir();
  const s = await serveProcess(['--model', models[0]!.file, '--name', 'det'], {
    SIGHTLINE_REGISTRY__DATA_DIR: dataDir,
    SIGHTLINE_POOL__WARMUP_RUNS: '1',
    ...env,
  });
  const reg = registryClient(s.address);
  try {
    for (const m of models.slice(1)) await uploadFile(reg, m.file, { model: 'det', labels: m.labels ?? [] });
    const pid = s.child.pid!;
    const settle = () => new Promise((r) => setTimeout(r, 150));
    await settle();
    const one = rssMb(pid);
    const n = models.length;
    const samples: number[] = [];
    let footprint = 0;
    let steady = 0;
    for (let i = 0; i < promotes; i++) {
      const version = ((i + 1) % n) + 1; // 2, 3, 1, 2, 3, ...
      await call(reg, reg.promote, { model: 'det', version, reason: `rss ${i}` });
      // Wait until the version that lost its pointer has drained and unloaded.
      for (let k = 0; k < 200; k++) {
        const st = await call(reg, reg.getModelStatus, { model: 'det' });
        if ((st.replicas[0]?.versions.length ?? 0) <= 2) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      await settle();
      samples.push(rssMb(pid));
      if (i === 0) footprint = samples[0]! - one;
      if (i === n - 1) steady = samples[i]!;
    }
    return {
      rssOneVersionMb: one,
      versionFootprintMb: footprint,
      rssSteadyMb: steady,
      rssAfterMb: samples.at(-1)!,
      rssMaxMb: Math.max(...samples),
      promotes,
      samplesMb: samples,
    };
  } finally {
    reg.close();
    await s.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  }
}
