/**
 * Raw ONNX Runtime on a prepared tensor: worker threads each running one session back to back, no
 * preprocessing, no pool, no gRPC. Throughput per layout (workers × intra-op threads) and the latency
 * of a run with nothing else running (the best single-request inference).
 */
import { Worker } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { prepareTensor } from '../src/inference/index.js';
import { resolveFamily } from '../src/inference/families/index.js';
import { readOnnxMetadata } from '../src/inference/onnx/metadata.js';
import type { LetterboxSpec } from '../src/inference/types.js';
import { median } from './stats.js';

export interface ModelUnderTest {
  model: Uint8Array;
  dims: number[];
  spec: LetterboxSpec;
  family: string;
  target: { width: number; height: number; spec: LetterboxSpec };
  /** bus.jpg as the model's input tensor. */
  tensor: Float32Array;
}

export async function modelUnderTest(model: Uint8Array, image: Buffer): Promise<ModelUnderTest> {
  const s = await ort.InferenceSession.create(model);
  const meta = s.inputMetadata[0]!;
  const dims = (meta.isTensor ? meta.shape : []) as number[];
  const outputs = s.outputMetadata.map((o) => ({ name: o.name, dims: (o.isTensor ? o.shape : []) as number[] }));
  const family = resolveFamily(outputs, {
    props: readOnnxMetadata(model),
    inputWidth: dims[3]!,
    inputHeight: dims[2]!,
  });
  await s.release();
  const target = { width: dims[3]!, height: dims[2]!, spec: family.letterbox };
  const p = await prepareTensor(
    image,
    target,
    { maxBytes: 64 << 20, maxPixels: 100_000_000 },
    { applyIccProfile: false },
  );
  return { model, dims, spec: family.letterbox, family: family.name, target, tensor: p.tensor };
}

/** Layouts for this machine: one thread per worker on every core, two per worker, one worker on every core. */
export function rawLayouts(cores: number): { workers: number; threads: number }[] {
  const l = [{ workers: cores, threads: 1 }];
  if (cores >= 4) l.push({ workers: cores / 2, threads: 2 });
  if (cores > 1) l.push({ workers: 1, threads: cores });
  l.push({ workers: 1, threads: 1 });
  return l;
}

const WORKER = new URL('./raw-worker.js', import.meta.url);

export async function rawThroughput(m: ModelUnderTest, workers: number, threads: number, durationMs: number) {
  const ws = Array.from(
    { length: workers },
    () =>
      new Worker(WORKER, {
        workerData: { model: m.model, intraOpThreads: threads, tensor: m.tensor, dims: m.dims, durationMs },
      }),
  );
  await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
  const t0 = performance.now();
  const results = await Promise.all(
    ws.map(
      (w) =>
        new Promise<number[]>((resolve) => {
          w.once('message', (msg: { lat: number[] }) => resolve(msg.lat));
          w.postMessage('go');
        }),
    ),
  );
  const seconds = (performance.now() - t0) / 1000;
  await Promise.all(ws.map(stopRawWorker));
  const lat = results.flat();
  return { workers, threads, throughput: lat.length / seconds, p50: median(lat) };
}

async function stopRawWorker(w: Worker): Promise<void> {
  await new Promise((r) => {
    w.once('message', r);
    w.postMessage('stop');
  });
  await w.terminate();
}
