/**
 * Preprocessing alone, in this thread, with the worker's own code (prepareTensor, its tensor left in
 * this thread's arena as the worker leaves it for ONNX Runtime): CPU per image from
 * the bytes to the model's input tensor, split into decoding and the rest (orientation, resize,
 * padding, normalisation), beside libjpeg-turbo's floor; and a CPU profile of it (node:inspector),
 * to show where the time goes.
 */
import { Session } from 'node:inspector/promises';
import { prepareTensor, type PrepareOptions, type PrepareTarget } from '../src/inference/index.js';
import type { BenchImage } from './images.js';
import { median } from './stats.js';

const LIMITS = { maxBytes: 64 << 20, maxPixels: 100_000_000 };

export interface PreprocessCost {
  /** CPU ms per image (all threads of the process), median. */
  cpuMs: number;
  decodeMs: number;
  resampleMs: number;
  decoder: string;
}

/** Median CPU per image over `n` runs, after a warm-up; the server's default options unless `options` say otherwise. */
export async function preprocessCost(
  img: BenchImage,
  target: PrepareTarget,
  n: number,
  options: Partial<PrepareOptions> = {},
): Promise<PreprocessCost> {
  const opts: PrepareOptions = { applyIccProfile: false, ...options };
  for (let i = 0; i < 3; i++) await prepareTensor(img.bytes, target, LIMITS, opts, undefined, false);
  const cpu: number[] = [];
  const dec: number[] = [];
  const res: number[] = [];
  let used = '';
  for (let i = 0; i < n; i++) {
    const c0 = process.cpuUsage();
    const r = await prepareTensor(img.bytes, target, LIMITS, opts, undefined, false);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
    dec.push(r.timing.decodeMs);
    res.push(r.timing.preprocessMs);
    used = r.decoder;
  }
  return { cpuMs: median(cpu), decodeMs: median(dec), resampleMs: median(res), decoder: used };
}

export interface ProfileRow {
  name: string;
  where: string;
  selfMs: number;
  share: number;
}

/** Self time by function over `n` runs on one image: the top `top` rows. Native calls show under their JS caller's name. */
export async function preprocessProfile(
  img: BenchImage,
  target: PrepareTarget,
  n: number,
  top: number,
): Promise<ProfileRow[]> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 100 });
  await session.post('Profiler.start');
  for (let i = 0; i < n; i++)
    await prepareTensor(img.bytes, target, LIMITS, { applyIccProfile: false }, undefined, false);
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  const dt = new Map<number, number>();
  const { samples = [], timeDeltas = [] } = profile;
  samples.forEach((id, i) => dt.set(id, (dt.get(id) ?? 0) + (timeDeltas[i] ?? 0) / 1000));
  const byFn = new Map<string, ProfileRow>();
  let total = 0;
  for (const node of profile.nodes) {
    const ms = dt.get(node.id) ?? 0;
    total += ms;
    const f = node.callFrame;
    const where = f.url
      ? `${f.url.replace(/^.*\/(src|bench|node_modules)\//, '$1/')}:${f.lineNumber + 1}`
      : 'native code (the decoder binding, V8 builtins)';
    const key = `${f.functionName || '(anonymous)'}|${where}`;
    const row = byFn.get(key) ?? { name: f.functionName || '(anonymous)', where, selfMs: 0, share: 0 };
    row.selfMs += ms;
    byFn.set(key, row);
  }
  return [...byFn.values()]
    .sort((a, b) => b.selfMs - a.selfMs)
    .slice(0, top)
    .map((r) => ({ ...r, selfMs: r.selfMs / n, share: r.selfMs / total }));
}
