/**
 * Raw ONNX Runtime baseline: one worker thread with one session on a prepared tensor. No preprocessing,
 * no pool, no gRPC: the ceiling the server is measured against. Messages: 'go' runs back to back for
 * durationMs and answers every latency (throughput); { type: 'once', tensor } runs once on the given
 * tensor and answers its latency (the c=1 pairs); 'stop' releases the session.
 */
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';

interface Init {
  model: Uint8Array;
  intraOpThreads: number;
  tensor: Float32Array;
  dims: number[];
  durationMs: number;
}

const d = workerData as Init;
const session = await ort.InferenceSession.create(d.model, {
  intraOpNumThreads: d.intraOpThreads,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
});
const input = session.inputNames[0]!;
const feeds = { [input]: new ort.Tensor('float32', d.tensor, d.dims) };
for (let i = 0; i < 3; i++) await session.run(feeds); // warm-up
parentPort!.postMessage({ type: 'ready' });
parentPort!.on('message', async (msg: 'go' | 'stop' | { type: 'once'; tensor: Float32Array }) => {
  if (msg === 'go') {
    const lat: number[] = [];
    const end = performance.now() + d.durationMs;
    while (performance.now() < end) {
      const t0 = performance.now();
      await session.run(feeds);
      lat.push(performance.now() - t0);
    }
    parentPort!.postMessage({ type: 'done', lat });
  } else if (msg === 'stop') {
    await session.release();
    parentPort!.postMessage({ type: 'stopped' });
  } else {
    const t0 = performance.now();
    await session.run({ [input]: new ort.Tensor('float32', msg.tensor, d.dims) });
    parentPort!.postMessage({ type: 'once', ms: performance.now() - t0 });
  }
});
