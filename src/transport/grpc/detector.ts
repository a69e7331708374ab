/** sightline.v1.Detector handlers: adapters from gRPC calls to the DetectService. */
import type { sendUnaryData, ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import type { DetectorServer, DetectRequest, DetectResponse } from '../../generated/sightline/v1/detector.js';
import type { DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { fromDetectRequest, toDetectResponse } from './convert.js';
import { signalFor } from './deadline.js';
import { grpcCodeOf, toStatus } from './status.js';

export function detectorHandlers(detect: DetectService, log: Logger): DetectorServer {
  return {
    detect(call: ServerUnaryCall<DetectRequest, DetectResponse>, cb: sendUnaryData<DetectResponse>) {
      const { signal, dispose } = signalFor(call);
      const t0 = performance.now();
      detect
        .detect(fromDetectRequest(call.request), signal)
        .then(
          (r) => {
            if (log.isLevelEnabled('debug')) log.debug({ event: 'detect', model: r.model, version: r.version, status: 'OK', ms: r.timing.totalMs }, 'detect');
            cb(null, toDetectResponse(r));
          },
          (e: unknown) => {
            if (log.isLevelEnabled('debug')) log.debug({ event: 'detect', model: call.request.model, code: grpcCodeOf(e), ms: performance.now() - t0, err: (e as Error).message }, 'detect failed');
            cb(toStatus(e, log));
          },
        )
        .finally(dispose);
    },

    /** Simple in-order streaming: one frame at a time, responses in request order. */
    stream(call: ServerDuplexStream<DetectRequest, DetectResponse>) {
      const { signal, dispose } = signalFor(call);
      let chain: Promise<void> = Promise.resolve();
      let failed = false;
      call.on('data', (req: DetectRequest) => {
        chain = chain.then(async () => {
          if (failed || signal.aborted) return;
          try {
            const r = await detect.detect(fromDetectRequest(req), signal);
            call.write(toDetectResponse(r));
          } catch (e) {
            failed = true;
            call.emit('error', toStatus(e, log));
          }
        });
      });
      call.on('end', () => {
        void chain.then(() => {
          if (!failed) call.end();
          dispose();
        });
      });
      call.on('cancelled', dispose);
    },
  };
}
