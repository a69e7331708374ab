/**
 * Early admission: a Detect or ModelInfer call arriving while the server is at capacity is refused from its
 * headers, before its image is received. The request body never has to be read or parsed, so under
 * overload a refusal costs almost nothing and the CPU goes to the calls that were accepted. The
 * authoritative check stays in the serving layer (admission before decoding); this is a fast path.
 */
import { Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import type { RpcMethod } from '../../telemetry/metrics.js';
import { UNKNOWN, type DetectorTelemetry } from './observe.js';
import { toStatus } from './status.js';

/** The calls refused early, and the method their refusal is counted under. */
const ADMITTED: Readonly<Record<string, RpcMethod>> = {
  '/sightline.v1.Detector/Detect': 'Detect',
  '/inference.GRPCInferenceService/ModelInfer': 'ModelInfer',
};

export function admissionInterceptor(detect: DetectService, telemetry: DetectorTelemetry | undefined, log: Logger): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, mdNext) => {
            const rpc = ADMITTED[method.path];
            const refusal = rpc ? detect.refusal() : null;
            if (!rpc || !refusal) return mdNext(md);
            const s = toStatus(refusal, log);
            if (rpc === 'Detect') telemetry?.metrics.observeRequest({ method: rpc, model: UNKNOWN, version: UNKNOWN, grpcCode: s.code!, totalSeconds: 0 });
            else telemetry?.metrics.observeCall(rpc, UNKNOWN, UNKNOWN, s.code!, 0);
            call.sendStatus({ code: s.code!, details: s.details!, metadata: s.metadata ?? new Metadata() });
          },
        });
      },
    });
}
