/**
 * Traces (OpenTelemetry SDK): one SERVER span per gRPC call, continuing the caller's trace from the
 * W3C `traceparent` / `tracestate` metadata, with one child span per pipeline stage. Stage spans are
 * recorded after the fact from the measured durations, so the request path does no tracing work while
 * a request runs, and none at all when tracing is off (the default: exporter "none").
 *
 * Nothing is registered globally (no global tracer provider or context manager): spans are started
 * from this module's tracer with explicit parent contexts, so several servers in one process (tests)
 * each keep their own traces.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type TextMapGetter,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export interface TracingConfig {
  /** "none": no spans are created. "otlp": OTLP over HTTP (protobuf) to `endpoint`. */
  exporter: 'none' | 'otlp';
  /** Traces URL, e.g. http://otel-collector:4318/v1/traces. Default: the exporter's (OTEL_EXPORTER_OTLP_* or localhost:4318). */
  endpoint?: string;
  serviceName: string;
  /** Fraction of new traces sampled (a caller's sampled flag is always followed). Default 1. */
  sampleRatio?: number;
}

export interface TracingOptions {
  serviceVersion?: string;
  /** Replaces the configured exporter (tests: an InMemorySpanExporter); spans are exported as they end. */
  exporter?: SpanExporter;
}

/** What the request path needs of gRPC metadata (grpc-js Metadata fits). */
export interface MetadataLike {
  get(key: string): (string | Buffer)[];
}

/** Stage durations in milliseconds, in pipeline order (the serving layer's Timing fits). */
export interface StageTimingsMs {
  decodeMs: number;
  preprocessMs: number;
  queueMs: number;
  inferenceMs: number;
  postprocessMs: number;
}

const STAGES = [
  ['decode', 'decodeMs'],
  ['preprocess', 'preprocessMs'],
  ['queue', 'queueMs'],
  ['inference', 'inferenceMs'],
  ['postprocess', 'postprocessMs'],
] as const;

const metadataGetter: TextMapGetter<MetadataLike> = {
  keys: () => ['traceparent', 'tracestate'],
  get: (md, key) => {
    const v = md.get(key);
    if (v.length === 0) return undefined;
    const s = v.map((x) => (typeof x === 'string' ? x : x.toString('latin1')));
    return s.length === 1 ? s[0] : s;
  },
};

/** gRPC codes that mark a SERVER span as an error (OpenTelemetry semantic conventions for gRPC). */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15]);

/** Longest an OTLP export may take (also bounds the flush at shutdown). */
const EXPORT_TIMEOUT_MS = 5000;

/** Wall-clock milliseconds with sub-millisecond precision. */
const nowMs = (): number => performance.timeOrigin + performance.now();

export class Tracing {
  private readonly propagator = new W3CTraceContextPropagator();
  /** Start time (epoch ms) of each live request span, where its stage spans begin. */
  private readonly starts = new WeakMap<Span, number>();

  private constructor(
    readonly provider: BasicTracerProvider | null,
    private readonly tracer: Tracer | null,
  ) {}

  /** Tracing that records nothing. */
  static disabled(): Tracing {
    return new Tracing(null, null);
  }

  static init(cfg: TracingConfig, opts: TracingOptions = {}): Tracing {
    if (cfg.exporter === 'none' && !opts.exporter) return Tracing.disabled();
    let processor: SpanProcessor;
    if (opts.exporter) processor = new SimpleSpanProcessor(opts.exporter);
    else {
      // Bounded, so an unreachable collector cannot hold up shutdown for long.
      const exporter = new OTLPTraceExporter({
        ...(cfg.endpoint ? { url: cfg.endpoint } : {}),
        timeoutMillis: EXPORT_TIMEOUT_MS,
      });
      processor = new BatchSpanProcessor(exporter, { exportTimeoutMillis: EXPORT_TIMEOUT_MS });
    }
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: cfg.serviceName,
        ...(opts.serviceVersion ? { [ATTR_SERVICE_VERSION]: opts.serviceVersion } : {}),
      }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(cfg.sampleRatio ?? 1) }),
      spanProcessors: [processor],
    });
    return new Tracing(provider, provider.getTracer('sightline', opts.serviceVersion));
  }

  get enabled(): boolean {
    return this.tracer !== null;
  }

  /**
   * Starts the SERVER span of one call, as a child of the caller's span when the metadata carries a
   * valid `traceparent`. Undefined when tracing is off.
   */
  startRequestSpan(name: string, metadata: MetadataLike, attributes: Attributes): Span | undefined {
    if (!this.tracer) return undefined;
    const parent = this.propagator.extract(ROOT_CONTEXT, metadata, metadataGetter);
    const start = nowMs();
    const span = this.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes, startTime: start }, parent);
    this.starts.set(span, start);
    return span;
  }

  /**
   * Child spans for the pipeline stages of one image, laid end to end from `startMs` (default: the
   * request span's start) with the measured durations: the durations are exact, the offsets are
   * where the stages ran to within the time spent between them (validation, thread hand-over).
   */
  recordStages(parent: Span, timing: StageTimingsMs, attributes: Attributes = {}, startMs?: number): void {
    if (!this.tracer || !parent.isRecording()) return;
    const ctx = trace.setSpan(ROOT_CONTEXT, parent);
    let t = startMs ?? this.starts.get(parent) ?? nowMs();
    for (const [stage, key] of STAGES) {
      const ms = Math.max(0, timing[key]);
      this.tracer
        .startSpan(
          stage,
          { kind: SpanKind.INTERNAL, startTime: t, attributes: { ...attributes, 'sightline.stage': stage } },
          ctx,
        )
        .end(t + ms);
      t += ms;
    }
  }

  /** Ends a request span with its gRPC status (an error status for server-side failures). */
  endRequestSpan(span: Span, grpcCode: number, attributes: Attributes = {}, message?: string): void {
    if (span.isRecording()) {
      span.setAttributes({ ...attributes, 'rpc.grpc.status_code': grpcCode });
      if (SERVER_ERROR_CODES.has(grpcCode))
        span.setStatus({ code: SpanStatusCode.ERROR, ...(message ? { message } : {}) });
    }
    span.end(nowMs());
    this.starts.delete(span);
  }

  async forceFlush(): Promise<void> {
    await this.provider?.forceFlush();
  }

  async shutdown(): Promise<void> {
    await this.provider?.shutdown();
  }
}

export type { SpanExporter };

/** Tracing from the configuration: no provider at all when the exporter is "none". */
export function initTracing(cfg: TracingConfig, opts: TracingOptions = {}): Tracing {
  return Tracing.init(cfg, opts);
}
