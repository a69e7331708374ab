/**
 * Metrics (OpenTelemetry SDK), read in pull mode by Prometheus through the admin HTTP server: this
 * module owns the MeterProvider and the Prometheus exporter (no HTTP server of its own) and turns a
 * collection into the Prometheus text exposition format on scrape().
 *
 * Instrument names and attributes follow the OpenTelemetry semantic conventions where one exists
 * (rpc.server.call.duration with rpc.system / rpc.service / rpc.method / rpc.grpc.status_code;
 * process.*, nodejs.*, v8js.* from the runtime packages) and are `sightline.*` otherwise. Prometheus
 * names are derived the way the OpenTelemetry ↔ Prometheus compatibility specification says: `.` →
 * `_`, the unit as a suffix (`s` → `_seconds`, `By` → `_bytes`, `1` → `_ratio` on gauges, `{…}`
 * annotations dropped), `_total` on counters. Every name is listed in the README ("Metrics").
 *
 * Disabled (enabled: false), every method returns at once and nothing is allocated per call.
 */
import {
  ValueType,
  type Attributes,
  type Counter,
  type Gauge,
  type Histogram,
  type Meter,
  type ObservableGauge,
  type UpDownCounter,
} from '@opentelemetry/api';
import { PrometheusExporter, PrometheusSerializer } from '@opentelemetry/exporter-prometheus';
import { HostMetrics } from '@opentelemetry/host-metrics';
import { RuntimeNodeInstrumentation } from '@opentelemetry/instrumentation-runtime-node';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { DataPointType, MeterProvider, type MetricData, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';

export interface StageSeconds {
  decode: number;
  preprocess: number;
  queue: number;
  inference: number;
  postprocess: number;
}

export type RpcMethod = 'Detect' | 'Stream' | 'ModelInfer';

/** The transport an image came over: the gRPC port, or the HTTP port (same operations). */
export type RpcSystem = 'grpc' | 'http';

/** One image answered: a Detect call, one frame of a Stream, or one image of a ModelInfer call. */
export interface RequestObservation {
  method: RpcMethod;
  /** Default grpc. */
  system?: RpcSystem;
  /** The model and version that served it ("unknown" when the request never resolved to one). */
  model: string;
  version: string;
  /** gRPC status code of the answer (0 = OK). */
  grpcCode: number;
  totalSeconds: number;
  /** Stage durations, when the image got as far as a result. */
  stages?: StageSeconds;
  detections?: readonly { classId: number; label: string; confidence: number }[];
}

export type ModelEvent = 'load' | 'warmup' | 'promote' | 'rollback' | 'unload' | 'load_failed';

export interface PoolReading {
  workers: number;
  busyWorkers: number;
  /** Requests admitted and not yet running on a worker (being decoded, or waiting). */
  admitted: number;
  /** Prepared requests waiting for a worker. */
  queued: number;
  /** Most requests admitted at once (workers + maxQueue); beyond it RESOURCE_EXHAUSTED. */
  admissionLimit?: number;
}

/** A shadow's pair: the model, its active version (the live answers) and the candidate. */
export interface ShadowPair {
  model: string;
  version: string;
  candidate: string;
}

/** What a shadow sample is counted as: compared, the candidate failed, or dropped (and why). */
export type ShadowOutcome = 'compared' | 'failed' | 'busy' | 'expired' | 'not_loaded';

/** One image compared (eval/compare.ts ImageComparison, structurally). */
export interface ShadowComparison {
  readonly agreement: number;
  readonly classes: ReadonlyMap<
    number,
    { readonly matched: number; readonly activeOnly: number; readonly candidateOnly: number }
  >;
}

/** What the registry knows of the replicas reporting to it (role registry and all). */
export interface FleetReading {
  replicas: readonly {
    replica: string;
    /** Seconds since its last report. */
    reportAgeSeconds: number;
    versions: readonly { model: string; version: string; state: string }[];
  }[];
}

export interface MetricsOptions {
  serviceVersion: string;
  /** false: every method is a no-op and scrape() answers an empty exposition. Default true. */
  enabled?: boolean;
  serviceName?: string;
  /** Process (CPU, memory) and Node.js runtime (event loop, heap, GC) metrics. Default true. */
  runtime?: boolean;
}

/** Attribute names (OpenTelemetry; Prometheus labels have `.` replaced by `_`). */
export const ATTR = {
  rpcSystem: 'rpc.system',
  rpcService: 'rpc.service',
  rpcMethod: 'rpc.method',
  grpcStatus: 'rpc.grpc.status_code',
  model: 'sightline.model',
  version: 'sightline.model.version',
  stage: 'sightline.stage',
  className: 'sightline.class',
  outcome: 'sightline.stream.outcome',
  event: 'sightline.model.event',
  feature: 'sightline.feature',
  replica: 'sightline.replica',
  versionState: 'sightline.model.version.state',
  rolloutOutcome: 'sightline.rollout.outcome',
  shadowVersion: 'sightline.shadow.version',
  shadowOutcome: 'sightline.shadow.outcome',
  shadowBox: 'sightline.shadow.box',
  shadowArm: 'sightline.shadow.arm',
  canaryOutcome: 'sightline.canary.outcome',
} as const;

export const RPC_SERVICE = 'sightline.v1.Detector';
/** The Open Inference Protocol's service (ModelInfer). */
export const OIP_SERVICE = 'inference.GRPCInferenceService';

/** The service a method belongs to (rpc.service). */
export const serviceOf = (method: RpcMethod): string => (method === 'ModelInfer' ? OIP_SERVICE : RPC_SERVICE);

/** Latency buckets in seconds: 5 ms … 10 s. */
export const LATENCY_BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];
/** Model load / warm-up durations: 10 ms … 5 min. */
export const MODEL_EVENT_BUCKETS_S = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Rollouts: 100 ms … 10 min. */
export const ROLLOUT_BUCKETS_S = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
/** Detections in one image. */
export const DETECTION_COUNT_BUCKETS = [0, 1, 2, 3, 5, 10, 20, 50, 100, 200, 300, 500, 1000];
/** Per-image agreement of a shadow's two answers. */
export const AGREEMENT_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1];
/** Detection confidence in 0.05 steps. */
export const CONFIDENCE_BUCKETS = Array.from({ length: 20 }, (_, i) => Math.round((i + 1) * 5) / 100);

const STAGES = ['decode', 'preprocess', 'queue', 'inference', 'postprocess'] as const;

/** OpenTelemetry unit → Prometheus name suffix (the compatibility specification's table, abridged). */
const UNIT_SUFFIX: Record<string, string> = {
  d: 'days',
  h: 'hours',
  min: 'minutes',
  s: 'seconds',
  ms: 'milliseconds',
  us: 'microseconds',
  ns: 'nanoseconds',
  By: 'bytes',
  KiBy: 'kibibytes',
  MiBy: 'mebibytes',
  GiBy: 'gibibytes',
  KBy: 'kilobytes',
  MBy: 'megabytes',
  GBy: 'gigabytes',
  bit: 'bits',
  '%': 'percent',
  Hz: 'hertz',
};

/** The Prometheus name of an instrument before `_total` (added by the serializer to counters). */
export function prometheusBaseName(name: string, unit: string, isGauge: boolean): string {
  const base = name.replace(/[^a-zA-Z0-9_]/g, '_').replace(/_{2,}/g, '_');
  const u = unit.replace(/\{[^}]*\}/g, '').trim();
  let suffix: string;
  if (u === '1') suffix = isGauge ? 'ratio' : '';
  else if (u.includes('/')) {
    const [num, den] = u.split('/', 2) as [string, string];
    const a = UNIT_SUFFIX[num] ?? '';
    const b = UNIT_SUFFIX[den] ?? { s: 'second', m: 'minute', h: 'hour', d: 'day' }[den] ?? '';
    suffix = a && b ? `${a}_per_${b.replace(/s$/, '')}` : '';
  } else suffix = UNIT_SUFFIX[u] ?? '';
  return suffix && !base.endsWith(`_${suffix}`) ? `${base}_${suffix}` : base;
}

function isGauge(m: MetricData): boolean {
  return m.dataPointType === DataPointType.GAUGE || (m.dataPointType === DataPointType.SUM && !m.isMonotonic);
}

/**
 * Units the semantic conventions give to instruments that @opentelemetry/host-metrics creates without
 * one, so that their Prometheus names carry the unit like every other metric here.
 */
const MISSING_UNITS: Readonly<Record<string, string>> = {
  'process.memory.usage': 'By',
  'process.cpu.utilization': '1',
};

/** Every metric under its Prometheus name with the unit suffix (the exporter only adds `_total`). */
function withUnitSuffix(m: MetricData): MetricData {
  const unit = m.descriptor.unit || (MISSING_UNITS[m.descriptor.name] ?? '');
  const name = prometheusBaseName(m.descriptor.name, unit, isGauge(m));
  return name === m.descriptor.name ? m : ({ ...m, descriptor: { ...m.descriptor, name, unit } } as MetricData);
}

interface Instruments {
  rpcDuration: Histogram;
  httpDuration: Histogram;
  requestDuration: Histogram;
  stageDuration: Histogram;
  images: Counter;
  detectionsPerImage: Histogram;
  confidence: Histogram;
  detections: Counter;
  active: UpDownCounter;
  streamFrames: Counter;
  modelEvents: Counter;
  modelEventDuration: Histogram;
  modelReady: ObservableGauge;
  driftPsi: Gauge;
  driftKs: Gauge;
  anomalies: Counter;
  rollouts: Counter;
  rolloutDuration: Histogram;
  shadowRequests: Counter;
  shadowAgreement: Histogram;
  shadowBoxes: Counter;
  shadowDuration: Histogram;
  canaries: Counter;
}

interface Live {
  provider: MeterProvider;
  exporter: PrometheusExporter;
  serializer: PrometheusSerializer;
  meter: Meter;
  i: Instruments;
  runtime: RuntimeNodeInstrumentation | null;
  /** sightline.model.ready per "model\0version". */
  ready: Map<string, { model: string; version: string; value: number }>;
  /** Attribute objects reused per label combination (the hot path allocates none after warm-up). */
  attrs: Map<string, Attributes>;
  /** "model\0version" of versions unloaded since they were last loaded: their gauges are not exported. */
  forgotten: Set<string>;
  /** Observable gauges whose series come and go (replicas and their versions): only the attribute sets of the latest callback are exported. */
  observed: Map<string, Set<string>>;
}

/**
 * Gauges that describe a loaded version's present state. The SDK keeps exporting the last value of
 * every attribute set it has seen (synchronous and observable gauges alike, under the cumulative
 * temporality Prometheus needs), so a retired version's drift PSI would stay above an alert's threshold
 * forever. forExposition drops these for forgotten versions; counters and histograms stay, as they are
 * cumulative and their rates fall to zero.
 */
const VERSION_STATE_GAUGES: ReadonlySet<string> = new Set([
  'sightline.model.ready',
  'sightline.drift.psi',
  'sightline.drift.ks',
]);

const versionKey = (model: string, version: string): string => `${model}\0${version}`;

/** A per-version gauge without the points of forgotten versions, or whose value is NaN (reset). */
function withoutRetiredVersions(m: MetricData, forgotten: ReadonlySet<string>): MetricData {
  if (!VERSION_STATE_GAUGES.has(m.descriptor.name) || m.dataPointType !== DataPointType.GAUGE) return m;
  const current = (a: Attributes, value: number): boolean =>
    !Number.isNaN(value) && !forgotten.has(versionKey(String(a[ATTR.model]), String(a[ATTR.version])));
  return { ...m, dataPoints: m.dataPoints.filter((d) => current(d.attributes, d.value)) };
}

/** One attribute set as a key (sorted, so the order attributes were given in does not matter). */
const attrKey = (a: Attributes): string => JSON.stringify(Object.entries(a).sort(([x], [y]) => x.localeCompare(y)));

/** A gauge of series that come and go, with only the series its latest callback observed. */
function onlyObserved(m: MetricData, observed: ReadonlyMap<string, ReadonlySet<string>>): MetricData {
  const current = observed.get(m.descriptor.name);
  if (!current || m.dataPointType !== DataPointType.GAUGE) return m;
  return { ...m, dataPoints: m.dataPoints.filter((d) => current.has(attrKey(d.attributes))) };
}

/** What /metrics shows of a collection: retired versions' and departed replicas' gauges dropped, Prometheus names. */
function forExposition(rm: ResourceMetrics, live: Pick<Live, 'forgotten' | 'observed'>): ResourceMetrics {
  return {
    resource: rm.resource,
    scopeMetrics: rm.scopeMetrics.map((sm) => ({
      scope: sm.scope,
      metrics: sm.metrics.map((m) =>
        withUnitSuffix(onlyObserved(withoutRetiredVersions(m, live.forgotten), live.observed)),
      ),
    })),
  };
}

export class Metrics {
  private closed = false;

  private constructor(private readonly live: Live | null) {}

  static create(opts: MetricsOptions): Metrics {
    if (opts.enabled === false) return new Metrics(null);
    const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true });
    const provider = new MeterProvider({
      resource: resourceFromAttributes({
        [ATTR_SERVICE_NAME]: opts.serviceName ?? 'sightline',
        [ATTR_SERVICE_VERSION]: opts.serviceVersion,
      }),
      readers: [exporter],
    });
    const meter = provider.getMeter('sightline', opts.serviceVersion);
    const ready = new Map<string, { model: string; version: string; value: number }>();
    const i: Instruments = {
      rpcDuration: meter.createHistogram('rpc.server.call.duration', {
        description: 'Duration of gRPC calls handled by the server: a whole Detect call, or a whole Stream',
        unit: 's',
        advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
      }),
      // OpenTelemetry HTTP semantic conventions: http.request.method, http.route, http.response.status_code, url.scheme.
      httpDuration: meter.createHistogram('http.server.request.duration', {
        description:
          'Duration of HTTP requests handled by the server (the HTTP port: Open Inference Protocol REST and /v1/detect)',
        unit: 's',
        advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
      }),
      requestDuration: meter.createHistogram('sightline.request.duration', {
        description: 'Time from receiving an image (a Detect request or a Stream frame) to its answer',
        unit: 's',
        advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
      }),
      stageDuration: meter.createHistogram('sightline.stage.duration', {
        description:
          'Time spent by one image in each pipeline stage (decode, preprocess, queue, inference, postprocess)',
        unit: 's',
        advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
      }),
      images: meter.createCounter('sightline.images', {
        description: 'Images run through a model (one per Detect call or Stream frame answered with detections)',
        unit: '{image}',
      }),
      detectionsPerImage: meter.createHistogram('sightline.request.detections', {
        description: 'Detections returned for one image',
        unit: '{detection}',
        valueType: ValueType.INT,
        advice: { explicitBucketBoundaries: DETECTION_COUNT_BUCKETS },
      }),
      confidence: meter.createHistogram('sightline.detection.confidence', {
        description: 'Confidence of each returned detection',
        unit: '1',
        advice: { explicitBucketBoundaries: CONFIDENCE_BUCKETS },
      }),
      detections: meter.createCounter('sightline.detections', {
        description: 'Returned detections by class (the class mix)',
        unit: '{detection}',
      }),
      active: meter.createUpDownCounter('sightline.requests.active', {
        description: 'gRPC calls in progress: Detect calls being served, Streams open',
        unit: '{request}',
      }),
      streamFrames: meter.createCounter('sightline.stream.frames', {
        description: 'Stream frames answered, by outcome (delivered with detections, or dropped by the latest policy)',
        unit: '{frame}',
      }),
      modelEvents: meter.createCounter('sightline.model.events', {
        description: 'Model lifecycle events: load, warmup, promote, rollback, unload, load_failed',
        unit: '{event}',
      }),
      modelEventDuration: meter.createHistogram('sightline.model.event.duration', {
        description: 'Duration of model lifecycle events that take time (load, warmup)',
        unit: 's',
        advice: { explicitBucketBoundaries: MODEL_EVENT_BUCKETS_S },
      }),
      modelReady: meter.createObservableGauge('sightline.model.ready', {
        description:
          '1 when the model version is loaded, warmed up and serving as the active version; 0 when it is known but not serving',
      }),
      driftPsi: meter.createGauge('sightline.drift.psi', {
        description: 'Population stability index of a monitored feature: recent traffic against the reference profile',
      }),
      driftKs: meter.createGauge('sightline.drift.ks', {
        description:
          'Kolmogorov-Smirnov statistic of a monitored feature: recent traffic against the reference profile',
      }),
      anomalies: meter.createCounter('sightline.anomalies', {
        description: "Requests with a feature outside the reference profile's bounds",
        unit: '{request}',
      }),
      rollouts: meter.createCounter('sightline.rollouts', {
        description: 'Rollouts ended (promote or rollback followed until every replica serves it), by outcome',
        unit: '{rollout}',
      }),
      rolloutDuration: meter.createHistogram('sightline.rollout.duration', {
        description: 'Time from a pointer change to the end of its rollout, by outcome',
        unit: 's',
        advice: { explicitBucketBoundaries: ROLLOUT_BUCKETS_S },
      }),
      shadowRequests: meter.createCounter('sightline.shadow.requests', {
        description:
          'Live requests sampled for a shadow, by outcome: compared, failed (the candidate failed), ' +
          'or dropped for want of idle capacity (busy, expired) or of a loaded candidate (not_loaded)',
        unit: '{request}',
      }),
      shadowAgreement: meter.createHistogram('sightline.shadow.agreement', {
        description:
          "Per image, boxes of the candidate matching the active version's (same class, IoU >= 0.5) / the larger box count",
        unit: '1',
        advice: { explicitBucketBoundaries: AGREEMENT_BUCKETS },
      }),
      shadowBoxes: meter.createCounter('sightline.shadow.boxes', {
        description:
          'Boxes of shadow comparisons by class: matched, active_only (the candidate misses them), candidate_only (it adds them)',
        unit: '{box}',
      }),
      shadowDuration: meter.createHistogram('sightline.shadow.duration', {
        description:
          'Decode, preprocessing, inference and postprocessing of a shadow-compared image, for the active version and the candidate (comparable pairs only)',
        unit: 's',
        advice: { explicitBucketBoundaries: LATENCY_BUCKETS_S },
      }),
      canaries: meter.createCounter('sightline.canaries', {
        description:
          'Canaries ended, by outcome: promoted, rolled_back (automatically, worse than its margins), stopped, superseded',
        unit: '{canary}',
      }),
    };
    i.modelReady.addCallback((r) => {
      for (const e of ready.values()) r.observe(e.value, { [ATTR.model]: e.model, [ATTR.version]: e.version });
    });
    let runtime: RuntimeNodeInstrumentation | null = null;
    if (opts.runtime !== false) {
      // Event-loop delay and utilisation, heap and GC (nodejs.*, v8js.*); process CPU and memory (process.*).
      runtime = new RuntimeNodeInstrumentation({ enabled: false, monitoringPrecision: 10 });
      runtime.setMeterProvider(provider);
      runtime.enable();
      new HostMetrics({
        meterProvider: provider,
        name: 'sightline-process',
        metricGroups: ['process.cpu', 'process.memory'],
      }).start();
    }
    // Arguments: no prefix, no timestamps, no resource labels on series, target_info kept, no otel_scope_* labels.
    const serializer = new PrometheusSerializer(undefined, false, undefined, false, true);
    return new Metrics({
      provider,
      exporter,
      serializer,
      meter,
      i,
      runtime,
      ready,
      attrs: new Map(),
      forgotten: new Set(),
      observed: new Map(),
    });
  }

  get enabled(): boolean {
    return this.live !== null;
  }

  private attrs(key: string, make: () => Attributes): Attributes {
    const cache = this.live!.attrs;
    let a = cache.get(key);
    if (!a) {
      // A bounded set in practice (models × versions × codes × stages); a safety valve all the same.
      if (cache.size > 10_000) cache.clear();
      cache.set(key, (a = Object.freeze(make())));
    }
    return a;
  }

  private rpcAttrs(
    method: RpcMethod,
    model: string,
    version: string,
    code: number,
    system: RpcSystem = 'grpc',
  ): Attributes {
    return this.attrs(`r\0${system}\0${method}\0${model}\0${version}\0${code}`, () => ({
      [ATTR.rpcSystem]: system,
      [ATTR.rpcService]: serviceOf(method),
      [ATTR.rpcMethod]: method,
      [ATTR.grpcStatus]: code,
      [ATTR.model]: model,
      [ATTR.version]: version,
    }));
  }

  private modelAttrs(model: string, version: string, method?: RpcMethod): Attributes {
    return this.attrs(`m\0${method ?? ''}\0${model}\0${version}`, () =>
      method
        ? { [ATTR.rpcMethod]: method, [ATTR.model]: model, [ATTR.version]: version }
        : { [ATTR.model]: model, [ATTR.version]: version },
    );
  }

  /** One image answered (a Detect call, a Stream frame, a ModelInfer image). A gRPC Detect call also counts as one RPC. */
  observeRequest(o: RequestObservation): void {
    if (!this.live) return;
    const { i } = this.live;
    const system = o.system ?? 'grpc';
    const rpc = this.rpcAttrs(o.method, o.model, o.version, o.grpcCode, system);
    if (o.method === 'Detect' && system === 'grpc') i.rpcDuration.record(o.totalSeconds, rpc);
    i.requestDuration.record(o.totalSeconds, rpc);
    if (o.stages) {
      for (const stage of STAGES) {
        const a = this.attrs(`s\0${o.method}\0${o.model}\0${o.version}\0${stage}`, () => ({
          [ATTR.rpcMethod]: o.method,
          [ATTR.model]: o.model,
          [ATTR.version]: o.version,
          [ATTR.stage]: stage,
        }));
        i.stageDuration.record(o.stages[stage], a);
      }
    }
    if (o.detections) {
      const m = this.modelAttrs(o.model, o.version);
      i.images.add(1, this.modelAttrs(o.model, o.version, o.method));
      i.detectionsPerImage.record(o.detections.length, m);
      // Class mix: one add per class present, not one per detection.
      if (o.detections.length > 0) {
        const byClass = new Map<string, number>();
        for (const d of o.detections) {
          i.confidence.record(d.confidence, m);
          byClass.set(d.label, (byClass.get(d.label) ?? 0) + 1);
        }
        for (const [label, n] of byClass) {
          i.detections.add(
            n,
            this.attrs(`c\0${o.model}\0${o.version}\0${label}`, () => ({
              [ATTR.model]: o.model,
              [ATTR.version]: o.version,
              [ATTR.className]: label,
            })),
          );
        }
      }
    }
  }

  /** A whole Stream call ended (its frames are counted by observeRequest and observeStreamFrame). */
  observeStreamCall(model: string, version: string, grpcCode: number, seconds: number): void {
    this.observeCall('Stream', model, version, grpcCode, seconds);
  }

  /** A whole gRPC call of a method whose images are observed one by one (Stream, ModelInfer) ended. */
  observeCall(method: RpcMethod, model: string, version: string, grpcCode: number, seconds: number): void {
    if (!this.live) return;
    this.live.i.rpcDuration.record(seconds, this.rpcAttrs(method, model, version, grpcCode));
  }

  /**
   * One HTTP request answered (http.server.request.duration). `route` is the matched route template
   * (never the raw path, so clients cannot add series; "" when no route matched); server errors
   * (5xx) carry error.type, their status code.
   */
  observeHttp(o: { method: string; route: string; status: number; scheme: 'http' | 'https'; seconds: number }): void {
    if (!this.live) return;
    const a = this.attrs(`h\0${o.method}\0${o.route}\0${o.status}\0${o.scheme}`, () => ({
      'http.request.method': o.method,
      ...(o.route ? { 'http.route': o.route } : {}),
      'http.response.status_code': o.status,
      'url.scheme': o.scheme,
      ...(o.status >= 500 ? { 'error.type': String(o.status) } : {}),
    }));
    this.live.i.httpDuration.record(o.seconds, a);
  }

  /** Counts a call in progress; call the returned function once when it ends. */
  trackActive(method: RpcMethod): () => void {
    if (!this.live) return noop;
    const { active } = this.live.i;
    const a = this.attrs(`a\0${method}`, () => ({ [ATTR.rpcMethod]: method }));
    active.add(1, a);
    let done = false;
    return () => {
      if (!done) {
        done = true;
        active.add(-1, a);
      }
    };
  }

  observeStreamFrame(model: string, version: string, outcome: 'delivered' | 'dropped'): void {
    if (!this.live) return;
    this.live.i.streamFrames.add(
      1,
      this.attrs(`f\0${model}\0${version}\0${outcome}`, () => ({
        [ATTR.model]: model,
        [ATTR.version]: version,
        [ATTR.outcome]: outcome,
      })),
    );
  }

  observeModelEvent(model: string, version: string, event: ModelEvent, seconds?: number): void {
    if (!this.live) return;
    const a = { [ATTR.model]: model, [ATTR.version]: version, [ATTR.event]: event };
    this.live.i.modelEvents.add(1, a);
    if (seconds !== undefined && Number.isFinite(seconds)) this.live.i.modelEventDuration.record(seconds, a);
  }

  /** sightline.model.ready for one version. A version that stays unknown here is not exported. */
  setModelReady(model: string, version: string, ready: boolean): void {
    if (!this.live) return;
    const k = versionKey(model, version);
    this.live.forgotten.delete(k);
    this.live.ready.set(k, { model, version, value: ready ? 1 : 0 });
  }

  /**
   * The version was unloaded: its readiness and drift gauges leave the exposition until it is loaded
   * again. The drift gauges are reset (NaN, never exported) so a later load does not show the old values
   * before its own window is published.
   */
  forgetModel(model: string, version: string): void {
    if (!this.live) return;
    const k = versionKey(model, version);
    this.live.ready.delete(k);
    this.live.forgotten.add(k);
    const prefix = `d\0${k}\0`;
    for (const [key, a] of this.live.attrs) {
      if (!key.startsWith(prefix)) continue;
      this.live.i.driftPsi.record(Number.NaN, a);
      this.live.i.driftKs.record(Number.NaN, a);
    }
  }

  /** Pool gauges, read once per scrape. */
  observePool(read: () => PoolReading): void {
    if (!this.live) return;
    const { meter } = this.live;
    const workers = meter.createObservableGauge('sightline.pool.workers', {
      description: 'Inference worker threads',
      unit: '{worker}',
    });
    const busy = meter.createObservableGauge('sightline.pool.workers.busy', {
      description: 'Inference workers running an inference (or loading a model)',
      unit: '{worker}',
    });
    const utilization = meter.createObservableGauge('sightline.pool.utilization', {
      description: 'Busy workers / workers',
      unit: '1',
    });
    const queued = meter.createObservableGauge('sightline.pool.queue.depth', {
      description: 'Prepared images waiting for a free worker',
      unit: '{request}',
    });
    const admitted = meter.createObservableGauge('sightline.pool.admitted', {
      description: 'Requests admitted and not yet running on a worker (being decoded, or waiting)',
      unit: '{request}',
    });
    const limit = meter.createObservableGauge('sightline.pool.admission.limit', {
      description: 'Most requests admitted at once (workers + pool.maxQueue); beyond it RESOURCE_EXHAUSTED',
      unit: '{request}',
    });
    meter.addBatchObservableCallback(
      (r) => {
        const s = read();
        r.observe(workers, s.workers);
        r.observe(busy, s.busyWorkers);
        r.observe(utilization, s.workers > 0 ? s.busyWorkers / s.workers : 0);
        r.observe(queued, s.queued);
        r.observe(admitted, s.admitted);
        if (s.admissionLimit !== undefined) r.observe(limit, s.admissionLimit);
      },
      [workers, busy, utilization, queued, admitted, limit],
    );
  }

  /** A rollout ended: succeeded, failed or superseded, after `seconds`. */
  observeRollout(model: string, outcome: string, seconds: number): void {
    if (!this.live) return;
    const a = this.attrs(`o\0${model}\0${outcome}`, () => ({ [ATTR.model]: model, [ATTR.rolloutOutcome]: outcome }));
    this.live.i.rollouts.add(1, a);
    if (Number.isFinite(seconds)) this.live.i.rolloutDuration.record(seconds, a);
  }

  /** A shadow sample counted by outcome (compared ones through observeShadowSample). */
  countShadow(p: ShadowPair, outcome: ShadowOutcome): void {
    if (!this.live) return;
    this.live.i.shadowRequests.add(1, this.shadowAttrs(p, ATTR.shadowOutcome, outcome));
  }

  /** One image compared by a shadow: agreement, boxes by class, and both latencies (seconds from ms) when comparable. */
  observeShadowSample(
    p: ShadowPair,
    c: ShadowComparison,
    latency: { activeMs: number; candidateMs: number } | null,
    names: readonly string[],
  ): void {
    if (!this.live) return;
    const { i } = this.live;
    i.shadowRequests.add(1, this.shadowAttrs(p, ATTR.shadowOutcome, 'compared'));
    i.shadowAgreement.record(c.agreement, this.shadowAttrs(p));
    for (const [cls, d] of c.classes) {
      const label = names[cls] ?? String(cls);
      for (const [box, n] of [
        ['matched', d.matched],
        ['active_only', d.activeOnly],
        ['candidate_only', d.candidateOnly],
      ] as const) {
        if (n > 0)
          i.shadowBoxes.add(
            n,
            this.attrs(`sb\0${p.model}\0${p.version}\0${p.candidate}\0${box}\0${label}`, () => ({
              ...this.shadowAttrs(p),
              [ATTR.shadowBox]: box,
              [ATTR.className]: label,
            })),
          );
      }
    }
    if (latency) {
      i.shadowDuration.record(latency.activeMs / 1000, this.shadowAttrs(p, ATTR.shadowArm, 'active'));
      i.shadowDuration.record(latency.candidateMs / 1000, this.shadowAttrs(p, ATTR.shadowArm, 'candidate'));
    }
  }

  private shadowAttrs(p: ShadowPair, extraKey?: string, extraValue?: string): Attributes {
    return this.attrs(`sh\0${p.model}\0${p.version}\0${p.candidate}\0${extraKey ?? ''}\0${extraValue ?? ''}`, () => ({
      [ATTR.model]: p.model,
      [ATTR.version]: p.version,
      [ATTR.shadowVersion]: p.candidate,
      ...(extraKey ? { [extraKey]: extraValue } : {}),
    }));
  }

  /** A canary ended (the registry): promoted, rolled_back, stopped or superseded. */
  countCanary(model: string, outcome: string): void {
    if (!this.live) return;
    this.live.i.canaries.add(
      1,
      this.attrs(`cn\0${model}\0${outcome}`, () => ({ [ATTR.model]: model, [ATTR.canaryOutcome]: outcome })),
    );
  }

  /** The registry's fleet view, read once per scrape: replicas, their versions and states, and how fresh each report is. */
  observeFleet(read: () => FleetReading): void {
    if (!this.live) return;
    const { meter, observed } = this.live;
    const replicas = meter.createObservableGauge('sightline.fleet.replicas', {
      description: 'Replicas reporting to this registry (inference replicas, or this process in role all)',
      unit: '{replica}',
    });
    const versions = meter.createObservableGauge('sightline.replica.versions', {
      description:
        'Model versions held by each replica reporting to this registry, by state (1 per version): loading, warming, ready, serving, draining, failed',
      unit: '{version}',
    });
    const age = meter.createObservableGauge('sightline.replica.report.age', {
      description: "Time since each replica's last report to this registry",
      unit: 's',
    });
    meter.addBatchObservableCallback(
      (r) => {
        const seen = { versions: new Set<string>(), age: new Set<string>() };
        const fleet = read();
        r.observe(replicas, fleet.replicas.length);
        for (const rep of fleet.replicas) {
          const a = { [ATTR.replica]: rep.replica };
          r.observe(age, rep.reportAgeSeconds, a);
          seen.age.add(attrKey(a));
          for (const v of rep.versions) {
            const va = {
              [ATTR.replica]: rep.replica,
              [ATTR.model]: v.model,
              [ATTR.version]: v.version,
              [ATTR.versionState]: v.state,
            };
            r.observe(versions, 1, va);
            seen.versions.add(attrKey(va));
          }
        }
        observed.set('sightline.replica.versions', seen.versions);
        observed.set('sightline.replica.report.age', seen.age);
      },
      [replicas, versions, age],
    );
  }

  /** Latest drift statistics of one feature (input features, prediction features, or "classMix"). */
  setDrift(model: string, version: string, feature: string, psi: number, ks: number): void {
    if (!this.live) return;
    const a = this.attrs(`d\0${model}\0${version}\0${feature}`, () => ({
      [ATTR.model]: model,
      [ATTR.version]: version,
      [ATTR.feature]: feature,
    }));
    if (Number.isFinite(psi)) this.live.i.driftPsi.record(psi, a);
    if (Number.isFinite(ks)) this.live.i.driftKs.record(ks, a);
  }

  countAnomaly(model: string, version: string, feature: string): void {
    if (!this.live) return;
    this.live.i.anomalies.add(
      1,
      this.attrs(`x\0${model}\0${version}\0${feature}`, () => ({
        [ATTR.model]: model,
        [ATTR.version]: version,
        [ATTR.feature]: feature,
      })),
    );
  }

  /** Prometheus text exposition format (version 0.0.4). */
  async scrape(): Promise<string> {
    if (!this.live || this.closed) return '';
    const { resourceMetrics } = await this.live.exporter.collect();
    // `# UNIT` is OpenMetrics metadata, not part of the 0.0.4 text format: the unit is in the name.
    return this.live.serializer.serialize(forExposition(resourceMetrics, this.live)).replace(/^# UNIT .*\n/gm, '');
  }

  async shutdown(): Promise<void> {
    if (!this.live || this.closed) return;
    this.closed = true;
    this.live.runtime?.disable();
    await this.live.provider.shutdown();
  }
}

const noop = (): void => undefined;
