/** Per-image metrics of a detection answered over any transport (gRPC Detect, Stream, ModelInfer; HTTP). */
import type { DetectResult } from '../serving/index.js';
import type { Metrics, RpcMethod, RpcSystem } from '../telemetry/metrics.js';

export function observeImage(
  metrics: Metrics,
  method: RpcMethod,
  r: DetectResult,
  totalSeconds: number,
  system: RpcSystem = 'grpc',
): void {
  const { timing } = r;
  metrics.observeRequest({
    method,
    system,
    model: r.model,
    version: String(r.version),
    grpcCode: 0,
    totalSeconds,
    stages: {
      decode: timing.decodeMs / 1000,
      preprocess: timing.preprocessMs / 1000,
      queue: timing.queueMs / 1000,
      inference: timing.inferenceMs / 1000,
      postprocess: timing.postprocessMs / 1000,
    },
    detections: r.detections,
  });
}
