/** sightline.v1.Detector handlers: adapters from gRPC calls to the serving layer. */
import {
  status as grpcStatus,
  type Metadata,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
} from '@grpc/grpc-js';
import {
  DropPolicy as ProtoDropPolicy,
  type DetectorServer,
  type DetectRequest,
  type DetectResponse,
} from '../../generated/sightline/v1/detector.js';
import { SightlineError } from '../../errors.js';
import {
  StreamSession,
  type DetectInput,
  type DetectService,
  type DropPolicy,
  type StreamSettings,
} from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { fromDetectRequest, toDetectResponse, toStreamResponse } from './convert.js';
import { signalFor } from './deadline.js';
import {
  clientRequestId,
  noTelemetry,
  ObservedCall,
  requestIdMetadata,
  UNKNOWN,
  type DetectorTelemetry,
} from './observe.js';
import { grpcCodeOf, toStatus } from './status.js';
import { labelsOf } from '../version.js';

export interface StreamConfig {
  defaultDropPolicy: DropPolicy;
  defaultMaxInFlight: number;
  maxInFlightLimit: number;
}

export interface DetectorHandlers {
  impl: DetectorServer;
  /** Asks every open stream to finish what it received and end with UNAVAILABLE (shutdown). */
  drainStreams(): void;
}

/** Stream settings: metadata first, then the first message's stream_options, then server defaults. */
function streamSettings(first: DetectRequest, md: Metadata, cfg: StreamConfig): StreamSettings {
  let policy: DropPolicy = cfg.defaultDropPolicy;
  let maxInFlight = cfg.defaultMaxInFlight;
  const mdPolicy = md.get('x-sightline-drop-policy')[0];
  if (mdPolicy !== undefined) {
    if (mdPolicy !== 'block' && mdPolicy !== 'latest')
      throw new SightlineError(
        'INVALID_INPUT',
        `x-sightline-drop-policy must be "block" or "latest", got "${String(mdPolicy)}"`,
      );
    policy = mdPolicy;
  }
  const mdMax = md.get('x-sightline-max-in-flight')[0];
  if (mdMax !== undefined) {
    const n = Number(mdMax);
    if (!Number.isInteger(n) || n < 1)
      throw new SightlineError(
        'INVALID_INPUT',
        `x-sightline-max-in-flight must be a positive integer, got "${String(mdMax)}"`,
      );
    maxInFlight = n;
  }
  const o = first.streamOptions;
  if (o?.dropPolicy === ProtoDropPolicy.DROP_POLICY_BLOCK) policy = 'block';
  else if (o?.dropPolicy === ProtoDropPolicy.DROP_POLICY_LATEST) policy = 'latest';
  if (o?.maxInFlight) maxInFlight = o.maxInFlight;
  if (maxInFlight > cfg.maxInFlightLimit) {
    throw new SightlineError(
      'INVALID_INPUT',
      `max_in_flight ${maxInFlight} is over the server limit ${cfg.maxInFlightLimit}`,
    );
  }
  return { policy, maxInFlight };
}

export function detectorHandlers(
  detect: DetectService,
  streamCfg: StreamConfig,
  log: Logger,
  telemetry: DetectorTelemetry = noTelemetry(),
): DetectorHandlers {
  const sessions = new Set<StreamSession>();
  let draining = false;

  const impl: DetectorServer = {
    detect(call: ServerUnaryCall<DetectRequest, DetectResponse>, cb: sendUnaryData<DetectResponse>) {
      const { signal, dispose } = signalFor(call);
      const obs = new ObservedCall(telemetry, 'Detect', call.metadata);
      call.sendMetadata(requestIdMetadata(obs.requestId));
      Promise.resolve()
        // A canary's split hashes the client's own request id (its retries keep it), else the image.
        .then(() =>
          detect.detect({ ...fromDetectRequest(call.request), routingKey: clientRequestId(call.metadata) }, signal),
        )
        .then(
          (r) => {
            // Answer first: the metrics, span and log below are not the caller's to wait for.
            const seconds = obs.seconds();
            cb(null, toDetectResponse(r));
            obs.image(r, seconds);
            obs.end(0, r, { 'sightline.detections': r.detections.length });
            obs.log(log, { model: r.model, version: r.version, code: 0, detections: r.detections.length }, 'detect');
          },
          (e: unknown) => {
            const code = grpcCodeOf(e);
            const labels = labelsOf(detect, call.request.model, call.request.version);
            obs.failedImage(code, labels);
            obs.end(code, labels, {}, (e as Error).message);
            obs.log(
              log,
              {
                model: call.request.model,
                version: labels?.version ?? null,
                requestedVersion: call.request.version,
                code,
                err: (e as Error).message,
              },
              'detect failed',
            );
            cb(toStatus(e, log));
          },
        )
        .finally(dispose);
    },

    stream(call: ServerDuplexStream<DetectRequest, DetectResponse>) {
      const { signal, dispose } = signalFor(call);
      const obs = new ObservedCall(telemetry, 'Stream', call.metadata);
      call.sendMetadata(requestIdMetadata(obs.requestId));
      // The version that answered the latest frame: the labels of the stream's call and dropped frames.
      let served: { model: string; version: number } | null = null;
      let delivered = 0;
      let dropped = 0;
      let finished = false;
      const finish = (code: number, err?: unknown) => {
        if (finished) return;
        finished = true;
        const message = err === undefined ? undefined : (err as Error).message;
        obs.end(
          code,
          served,
          { 'sightline.stream.frames.delivered': delivered, 'sightline.stream.frames.dropped': dropped },
          message,
        );
        obs.log(
          log,
          {
            model: served?.model ?? '',
            version: served?.version ?? null,
            code,
            delivered,
            dropped,
            ...(message ? { err: message } : {}),
          },
          'stream ended',
        );
      };
      let session: StreamSession | null = null;
      let failed = false;
      const fail = (e: unknown) => {
        failed = true;
        finish(grpcCodeOf(e), e);
        call.emit('error', toStatus(e, log));
        dispose();
      };
      if (draining) return fail(new SightlineError('NOT_READY', 'the server is shutting down'));
      call.on('data', (req: DetectRequest) => {
        if (failed) return;
        if (!session) {
          let settings: StreamSettings;
          try {
            settings = streamSettings(req, call.metadata, streamCfg);
          } catch (e) {
            return fail(e);
          }
          const s: StreamSession = new StreamSession(detect, settings, signal, {
            write: (item) => {
              // Every frame outcome passes here once (the session's onOutcome point), with its result.
              if (item.kind === 'result') {
                const r = item.result;
                if (served?.model !== r.model || served.version !== r.version)
                  served = { model: r.model, version: r.version };
                delivered++;
                obs.image(r, r.timing.totalMs / 1000);
                telemetry.metrics.observeStreamFrame(r.model, String(r.version), 'delivered');
              } else {
                dropped++;
                telemetry.metrics.observeStreamFrame(
                  served?.model ?? UNKNOWN,
                  served ? String(served.version) : UNKNOWN,
                  'dropped',
                );
              }
              return call.write(toStreamResponse(item));
            },
            pauseInput: () => call.pause(),
            resumeInput: () => call.resume(),
            end: (error) => {
              sessions.delete(s);
              finish(error === undefined ? grpcStatus.OK : grpcCodeOf(error), error);
              if (error === undefined) call.end();
              else call.emit('error', toStatus(error, log));
              dispose();
            },
          });
          session = s;
          sessions.add(s);
          if (draining) s.drain();
        }
        let input: DetectInput;
        try {
          // Every frame of a stream falls on the same side of a canary's split.
          input = { ...fromDetectRequest(req), routingKey: obs.requestId };
        } catch (e) {
          return session.reject(req.frameId, e);
        }
        session.push(input);
      });
      call.on('drain', () => session?.onWritable());
      call.on('end', () => (session ? session.endInput() : (finish(grpcStatus.OK), call.end(), dispose())));
      call.on('cancelled', () => {
        finish(grpcStatus.CANCELLED);
        if (session) sessions.delete(session);
        dispose();
      });
    },
  };
  return {
    impl,
    drainStreams() {
      draining = true;
      for (const s of sessions) s.drain();
    },
  };
}
