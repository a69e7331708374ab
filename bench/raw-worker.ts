/**
 * Raw ONNX Runtime baseline: one worker thread runs session.run on a prepared tensor in a loop until
 * told to stop. No preprocessing, no pool, no gRPC: the ceiling the server is measured against.
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

interface Init {
  model: Uint8Array;
  intraOpThreads: number;
  tensor: Float32Array;
  dims: number[];
  durationMs: number;
  startAt: number;
}

const d = workerData as Init;
const session = await ort.InferenceSession.create(d.model, { intraOpNumThreads: d.intraOpThreads, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', d.tensor, d.dims) };
for (let i = 0; i < 3; i++) await session.run(feeds); // warm-up
parentPort!.postMessage({ type: 'ready' });
parentPort!.once('message', async () => {
  const lat: number[] = [];
  const end = performance.now() + d.durationMs;
  while (performance.now() < end) {
    const t0 = performance.now();
    await session.run(feeds);
    lat.push(performance.now() - t0);
  }
  await session.release();
  parentPort!.postMessage({ type: 'done', lat });
});
