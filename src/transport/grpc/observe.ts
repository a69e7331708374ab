/**
 * Per-call telemetry for the Detector handlers: request id (x-request-id, echoed to the client), the
 * SERVER span continuing the caller's W3C trace, metrics per call and per image. With metrics and
 * tracing off, a call costs a request id and a few no-op calls.
 */
import { randomUUID } from 'node:crypto';
import { Metadata } from '@grpc/grpc-js';
import type { Span } from '@opentelemetry/api';
import type { DetectResult } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { Metrics, serviceOf, type RpcMethod } from '../../telemetry/metrics.js';
import { Tracing } from '../../telemetry/tracing.js';
import { observeImage } from '../image-metrics.js';

export interface DetectorTelemetry {
  metrics: Metrics;
  tracing: Tracing;
}

export const noTelemetry = (): DetectorTelemetry => ({
  metrics: Metrics.create({ serviceVersion: '', enabled: false }),
  tracing: Tracing.disabled(),
});

/** The model version a call resolved to: its metric labels and span attributes. */
type VersionLabels = { readonly model: string; readonly version: number };

/** Label value for requests that resolved to no loaded model version. */
export const UNKNOWN = 'unknown';

/** A client's own x-request-id is kept when it is short and plain; otherwise one is generated. */
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's own x-request-id, when it sent a usable one. */
export function clientRequestId(md: Metadata): string | undefined {
  const v = md.get('x-request-id')[0];
  return typeof v === 'string' && CLIENT_REQUEST_ID.test(v) ? v : undefined;
}

export function requestIdOf(md: Metadata): string {
  return clientRequestId(md) ?? randomUUID();
}

/** Initial metadata carrying the request id back to the client. */
export function requestIdMetadata(id: string): Metadata {
  const md = new Metadata();
  md.set('x-request-id', id);
  return md;
}

/** One gRPC call being observed: its request id, span, and the in-progress gauge. */
export class ObservedCall {
  readonly requestId: string;
  readonly span: Span | undefined;
  readonly t0 = performance.now();
  private readonly endActive: () => void;
  private ended = false;

  constructor(
    private readonly t: DetectorTelemetry,
    readonly method: RpcMethod,
    metadata: Metadata,
  ) {
    this.requestId = requestIdOf(metadata);
    this.endActive = t.metrics.trackActive(method);
    this.span = t.tracing.startRequestSpan(`${serviceOf(method)}/${method}`, metadata, {
      'rpc.system': 'grpc',
      'rpc.service': serviceOf(method),
      'rpc.method': method,
      'sightline.request_id': this.requestId,
    });
  }

  seconds(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** An image answered with detections (a Detect call, a Stream frame, an image of a ModelInfer call). */
  image(r: DetectResult, totalSeconds: number): void {
    observeImage(this.t.metrics, this.method, r, totalSeconds);
    // Stage spans for Detect and ModelInfer (one image each, or a bounded batch); a stream's frames would
    // make its trace unbounded.
    if (this.span && this.method !== 'Stream')
      this.t.tracing.recordStages(this.span, r.timing, {
        'sightline.model': r.model,
        'sightline.model.version': String(r.version),
      });
  }

  /** A Detect call that failed (labels: the version it resolved to, or "unknown"). */
  failedImage(code: number, labels: VersionLabels | null): void {
    this.t.metrics.observeRequest({
      method: this.method,
      model: labels?.model ?? UNKNOWN,
      version: labels ? String(labels.version) : UNKNOWN,
      grpcCode: code,
      totalSeconds: this.seconds(),
    });
  }

  /** The call is over: ends the span and, for a Stream, records the call itself. Idempotent. */
  end(code: number, labels: VersionLabels | null, extra: Record<string, string | number> = {}, message?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.endActive();
    // A Detect call's RPC duration is recorded with its image (image() / failedImage()).
    if (this.method !== 'Detect')
      this.t.metrics.observeCall(
        this.method,
        labels?.model ?? UNKNOWN,
        labels ? String(labels.version) : UNKNOWN,
        code,
        this.seconds(),
      );
    if (this.span) {
      this.t.tracing.endRequestSpan(
        this.span,
        code,
        labels
          ? { 'sightline.model': labels.model, 'sightline.model.version': String(labels.version), ...extra }
          : extra,
        message,
      );
    }
  }

  /** The per-call JSON log line (debug): request id, model, version, status, duration. */
  log(
    log: Logger,
    fields: { model: string; version: number | null; code: number; err?: string; [k: string]: unknown },
    msg: string,
  ): void {
    if (!log.isLevelEnabled('debug')) return;
    log.debug(
      { event: this.method.toLowerCase(), requestId: this.requestId, ...fields, ms: performance.now() - this.t0 },
      msg,
    );
  }
}
