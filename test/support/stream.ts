/** A Detect stream driven from a test: send frames, collect responses, observe how the call ended. */
import { Metadata, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { detectRequest } from '../../src/cli/client.js';
import {
  DropPolicy,
  type DetectorClient,
  type DetectRequest,
  type DetectResponse,
} from '../../src/generated/sightline/v1/detector.js';

export interface StreamRun {
  call: ClientDuplexStream<DetectRequest, DetectResponse>;
  responses: DetectResponse[];
  /** Receive time of each response (performance.now()). */
  receivedAt: number[];
  /** Resolves when the call ends: null for OK, the error otherwise. */
  done: Promise<ServiceError | null>;
  send(frameId: number, image: Buffer, extra?: Partial<DetectRequest>): boolean;
}

export function openStream(
  client: DetectorClient,
  opts: { policy?: 'block' | 'latest'; maxInFlight?: number; metadata?: Record<string, string> } = {},
): StreamRun {
  const md = new Metadata();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v);
  const call = client.stream(md);
  const responses: DetectResponse[] = [];
  const receivedAt: number[] = [];
  call.on('data', (r: DetectResponse) => {
    responses.push(r);
    receivedAt.push(performance.now());
  });
  const done = new Promise<ServiceError | null>((resolve) => {
    call.on('error', (e: ServiceError) => resolve(e));
    call.on('end', () => setImmediate(() => resolve(null)));
  });
  let first = true;
  return {
    call,
    responses,
    receivedAt,
    done,
    send(frameId, image, extra = {}) {
      const req = detectRequest({ image, frameId: BigInt(frameId), ...extra });
      if (first && (opts.policy || opts.maxInFlight)) {
        req.streamOptions = {
          dropPolicy:
            opts.policy === 'latest'
              ? DropPolicy.DROP_POLICY_LATEST
              : opts.policy === 'block'
                ? DropPolicy.DROP_POLICY_BLOCK
                : DropPolicy.DROP_POLICY_UNSPECIFIED,
          maxInFlight: opts.maxInFlight ?? 0,
        };
      }
      first = false;
      return call.write(req);
    },
  };
}
