/**
 * Early admission: a Detect or ModelInfer call arriving while the server is at capacity is refused from its
 * headers, before its image is received. The request body never has to be read or parsed, so under
 * overload a refusal costs almost nothing and the CPU goes to the calls that were accepted. The
 * authoritative check stays in the serving layer (admission before decoding); this is a fast path.
 * Clients that resend refused calls before their retry-after get their refusals paced (refusal-pacing.ts).
 */
import { Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import type { RpcMethod } from '../../telemetry/metrics.js';
import { UNKNOWN, type DetectorTelemetry } from './observe.js';
import { RefusalPacer } from './refusal-pacing.js';
import { toStatus } from './status.js';

/** The calls refused early, and the method their refusal is counted under. */
const ADMITTED: Readonly<Record<string, RpcMethod>> = {
  '/sightline.v1.Detector/Detect': 'Detect',
  '/inference.GRPCInferenceService/ModelInfer': 'ModelInfer',
};

/** Answer a held refusal this long before the call's deadline, so the client sees RESOURCE_EXHAUSTED. */
const DEADLINE_MARGIN_MS = 5;

export function admissionInterceptor(
  detect: DetectService,
  telemetry: DetectorTelemetry | undefined,
  log: Logger,
  refusalHoldMaxMs: number,
): ServerInterceptor {
  const pacer = new RefusalPacer(refusalHoldMaxMs);
  return (method, call) => {
    let held: NodeJS.Timeout | null = null;
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, mdNext) => {
            const rpc = ADMITTED[method.path];
            const refusal = rpc ? detect.refusal() : null;
            if (!rpc || !refusal) return mdNext(md);
            const s = toStatus(refusal, log);
            const refuse = () => {
              held = null;
              if (rpc === 'Detect')
                telemetry?.metrics.observeRequest({
                  method: rpc,
                  model: UNKNOWN,
                  version: UNKNOWN,
                  grpcCode: s.code!,
                  totalSeconds: 0,
                });
              else telemetry?.metrics.observeCall(rpc, UNKNOWN, UNKNOWN, s.code!, 0);
              call.sendStatus({ code: s.code!, details: s.details!, metadata: s.metadata ?? new Metadata() });
            };
            const now = Date.now();
            const wait = pacer.hold(call.getPeer(), Number(refusal.fields.retryAfterMs) || 0, now);
            const deadline = call.getDeadline();
            const left = (deadline instanceof Date ? deadline.getTime() : deadline) - now - DEADLINE_MARGIN_MS;
            if (wait <= 0 || left <= wait) return refuse();
            held = setTimeout(refuse, wait);
          },
          onCancel: () => {
            if (held) clearTimeout(held);
            held = null;
          },
        });
      },
    });
  };
}
