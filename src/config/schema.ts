/**
 * The one configuration schema, with every default. Units are in the names (…Ms, …Bytes).
 * Parsed once at start-up (config/load.ts), then frozen. Each default is stated once, on its field:
 * a missing section is parsed as {} (`.prefault({})`), so its fields' defaults fill it.
 */
import { z } from 'zod';
import type { CpuBudget } from './cpus.cjs';
import { FAMILY_NAMES, IDENTIFIER_PATTERN, IDENTIFIER_RULE } from '../identifiers.js';

const MiB = 1024 * 1024;

export const EXECUTION_PROVIDERS = ['cpu', 'cuda'] as const;

const ModelSource = z
  .object({
    /** Name clients use in DetectRequest.model. Identifier characters only (it never reaches a path). */
    name: z.string().regex(IDENTIFIER_PATTERN, `model names use ${IDENTIFIER_RULE}`),
    /** Path to the .onnx file. */
    path: z.string().min(1),
    /** Optional labels file, one class name per line; wins over names in the model's metadata. */
    labels: z.string().min(1).optional(),
    /** Force a family instead of detecting it from the output shapes. */
    family: z.enum(FAMILY_NAMES).optional(),
  })
  .strict();

export const SERVER_ROLES = ['all', 'registry', 'inference'] as const;
export type ServerRole = (typeof SERVER_ROLES)[number];

export const ConfigSchema = z
  .object({
    /**
     * all: registry and inference in one process (single machine). registry: owns the database and
     * blobs, serves the Registry service and blobs to replicas. inference: stateless, follows the
     * registry at registry.address.
     */
    role: z.enum(SERVER_ROLES).default('all'),
    grpc: z
      .object({
        /** Address to bind. Loopback by default; containers set 0.0.0.0. */
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(50051),
        /** Largest request message accepted by gRPC; a little above limits.maxImageBytes. */
        maxReceiveMessageBytes: z
          .number()
          .int()
          .min(1024)
          .default(17 * MiB),
        maxSendMessageBytes: z
          .number()
          .int()
          .min(1024)
          .default(4 * MiB),
        /**
         * Connections are closed (GOAWAY) after this age so clients reconnect and spread over new
         * replicas; 0 = never. Calls in flight get maxConnectionAgeGraceMs to finish.
         */
        maxConnectionAgeMs: z.number().int().min(0).default(0),
        maxConnectionAgeGraceMs: z.number().int().min(0).default(30_000),
        /** Server keepalive pings, so dead peers (and their streams) are noticed. */
        keepaliveTimeMs: z.number().int().min(1000).default(60_000),
        /**
         * HTTP/2 receive window advertised per stream and per connection. Node's default (64 KiB)
         * makes a client stop every 64 KiB of an image for a round trip; 4 MiB lets a typical photo
         * arrive in one go. 65535 keeps the default.
         */
        flowControlWindowBytes: z
          .number()
          .int()
          .min(65_535)
          .max(2 ** 31 - 1)
          .default(4 * MiB),
        /**
         * A connection that resends a refused call before the retry-after it was given waits out the rest
         * of it (at most this long) for its next refusal, instead of costing the server a received image
         * every few milliseconds. 0: refusals always answer at once.
         */
        refusalHoldMaxMs: z.number().int().min(0).max(60_000).default(1000),
      })
      .strict()
      .prefault({}),
    registry: z
      .object({
        /** SQLite database and content-addressed model blobs. Put it on a persistent volume. */
        dataDir: z.string().min(1).default('registry'),
        /** Largest model file an upload may send. */
        maxUploadBytes: z
          .number()
          .int()
          .min(1)
          .default(512 * MiB),
        /** Keep the rollback target loaded so Rollback is instant (one more model version in memory). */
        keepRollbackWarm: z.boolean().default(true),
        /** role inference: the registry's gRPC address (host:port), e.g. sightline-registry:50051. */
        address: z.string().min(1).optional(),
        /** role inference: where downloaded model blobs are cached (verified by sha256 before use). */
        cacheDir: z.string().min(1).default('cache'),
        /** role inference: file with the token sent to the registry (auth on). */
        tokenFile: z.string().min(1).optional(),
        /** role inference: CA certificate that signs the registry's TLS certificate; plaintext when absent. */
        caFile: z.string().min(1).optional(),
        /** role inference: deadline of each call to the registry (reading a version, tokens, profiles); the watch and report streams stay open. */
        callTimeoutMs: z.number().int().min(100).default(10_000),
        /** role inference: a model download that receives no bytes this long fails (the version is reported failed, and retried). */
        fetchIdleTimeoutMs: z.number().int().min(100).default(30_000),
        /** role inference: a model download must finish within callTimeoutMs + its size at this rate (default 1 MiB/s: 512 MiB in 8.7 min). */
        fetchMinBytesPerSecond: z
          .number()
          .int()
          .min(1)
          .default(1 * MiB),
        /** Largest golden dataset version (all its files together) an upload may send. */
        maxDatasetBytes: z
          .number()
          .int()
          .min(1)
          .default(1024 * MiB),
        /** Most files (images, labels, class names) in one golden dataset version. */
        maxDatasetFiles: z.number().int().min(1).default(100_000),
      })
      .strict()
      .prefault({}),
    /** Shadow runs of a candidate version on sampled live requests (README, "Promoting with evidence"): idle capacity only. */
    shadow: z
      .object({
        /** Sampled requests waiting for an idle worker at most, per server; beyond it a new one is dropped (counted, reason busy). */
        maxQueue: z.number().int().min(0).max(1024).default(8),
        /** A sampled request that found no idle worker within this is dropped (counted, reason expired). */
        maxWaitMs: z.number().int().min(1).max(60_000).default(2_000),
      })
      .strict()
      .prefault({}),
    /** Canaries (`registry promote NAME V --canary 10%`): when the registry rolls one back by itself. Each promote may set its own. */
    canary: z
      .object({
        /** Requests per arm (canary and baseline, over every replica) before the two are compared. */
        minSamples: z.number().int().min(1).default(100),
        /** Roll back when the canary's p99 exceeds (1 + p99Margin) × the baseline's. */
        p99Margin: z.number().min(0).default(0.2),
        /** Roll back when the canary's error rate exceeds the baseline's + errorRateMargin. */
        errorRateMargin: z.number().min(0).max(1).default(0.01),
      })
      .strict()
      .prefault({}),
    /** Gates every promote must pass, judged on stored evidence (README, "Promoting with evidence"). */
    promotion: z
      .object({
        /** Gates by model name ("*": models without their own list), e.g. { "det": ["map50_95>=active-0.005", "agreement>=0.9"] }. */
        require: z.record(z.string().min(1), z.array(z.string().min(1))).default({}),
        /** Shadow gates (agreement, agreement_p10, latency_ratio) need at least this many compared images. */
        minShadowSamples: z.number().int().min(1).default(50),
      })
      .strict()
      .prefault({}),
    /** Replicas tell the registry what they serve; the registry follows every promote and rollback until the fleet serves it. */
    fleet: z
      .object({
        /**
         * This server's name in the registry's fleet view (`registry status`); default: the host name,
         * which is the pod name on Kubernetes. Unique per replica.
         */
        replicaName: z.string().min(1).max(253).optional(),
        /** Replicas report at every change and at least this often. */
        reportIntervalMs: z.number().int().min(100).default(5_000),
        /** Registry: a replica silent this long (its report stream broken without a word) leaves the fleet view. */
        replicaTimeoutMs: z.number().int().min(200).default(15_000),
        /** Registry: a rollout that not every live replica serves by then fails (`promote --wait TIMEOUT` sets its own). */
        rolloutTimeoutMs: z.number().int().min(1_000).default(600_000),
        /** Servers that serve models: the first wait before reconnecting to a lost registry; it doubles up to retryMaxMs. */
        retryMinMs: z.number().int().min(10).default(250),
        /** Servers that serve models: the longest wait before reconnecting, and how often a version that failed to load is tried again. */
        retryMaxMs: z.number().int().min(100).default(5_000),
      })
      .strict()
      .refine((f) => f.retryMaxMs >= f.retryMinMs, {
        message: 'retryMaxMs must be at least retryMinMs',
        path: ['retryMaxMs'],
      })
      .refine((f) => f.replicaTimeoutMs > f.reportIntervalMs, {
        message: 'replicaTimeoutMs must exceed reportIntervalMs (replicas would leave the fleet view between reports)',
        path: ['replicaTimeoutMs'],
      })
      .prefault({}),
    /** TLS for the gRPC port. Plaintext unless enabled (a warning is logged when bound beyond loopback). */
    tls: z
      .object({
        enabled: z.boolean().default(false),
        /** PEM files; re-read without a restart when they change (Kubernetes rotates Secrets in place). */
        certFile: z.string().min(1).optional(),
        keyFile: z.string().min(1).optional(),
        /** Mutual TLS: client certificates must be signed by this CA; their subject is the caller's identity. */
        clientCaFile: z.string().min(1).optional(),
        /** How often the files are checked for changes. */
        reloadCheckMs: z.number().int().min(100).default(5_000),
      })
      .strict()
      .prefault({}),
    /** Bearer tokens with roles (viewer, inferencer, publisher, admin). Off for local use; on in the Helm chart. */
    auth: z
      .object({
        enabled: z.boolean().default(false),
        /** Failed authentications allowed per peer address per minute before it is refused outright. */
        maxFailuresPerMinute: z.number().int().min(1).default(20),
        /** A file holding a token accepted with the admin role (principal "bootstrap"): the first credential of a new install. */
        bootstrapTokenFile: z.string().min(1).optional(),
        /** A file holding the token inference replicas present (role viewer, principal "replica"). */
        replicaTokenFile: z.string().min(1).optional(),
        /**
         * role inference: how often the registry's tokens are re-read (a revocation reaches replicas
         * within this). A token the replica does not know also triggers a re-read, at most once a second.
         */
        tokenSyncIntervalMs: z.number().int().min(1000).default(10_000),
      })
      .strict()
      .prefault({}),
    /** AES-256-GCM encryption of model blobs at rest. The key (32 bytes, hex or base64) comes from a file or an environment variable. */
    encryption: z
      .object({
        keyFile: z.string().min(1).optional(),
        /** Name of the environment variable holding the key. */
        keyEnv: z.string().min(1).optional(),
        /**
         * Files of keys that only decrypt: the old key while `sightline key rotate` re-encrypts with the
         * server up (new files are written with the current key).
         */
        previousKeyFiles: z.array(z.string().min(1)).optional(),
      })
      .strict()
      .prefault({}),
    /**
     * Model files registered at start-up (if new) and promoted when their model has no active version.
     * The first one is the default model unless defaultModel says otherwise.
     */
    models: z.array(ModelSource).default([]),
    defaultModel: z.string().optional(),
    limits: z
      .object({
        /** Largest encoded image accepted. */
        maxImageBytes: z
          .number()
          .int()
          .min(1)
          .default(16 * MiB),
        /** Largest decoded image (width × height × frames) accepted; checked from the header before decoding. */
        maxImagePixels: z.number().int().min(1).default(40_000_000),
        /** Upper bound a client may ask for in max_detections. */
        maxDetections: z.number().int().min(1).default(10_000),
      })
      .strict()
      .prefault({}),
    preprocess: z
      .object({
        /**
         * Convert photos with an embedded ICC profile to sRGB before inference. Off by default, as the
         * models were trained: Ultralytics and YOLOX read images with OpenCV, which ignores embedded
         * profiles (JPEGs then go to libjpeg-turbo directly). On: the colours a colour-managed viewer
         * shows; tagged photos are decoded by sharp instead, about twice the CPU.
         */
        applyIccProfile: z.boolean().default(false),
        /**
         * Decode a JPEG at 1/2, 1/4 or 1/8 of its size inside libjpeg-turbo's IDCT when the model input
         * is at most that fraction of the image (a 12 MP photo for a 640 model: 1/4), instead of decoding
         * every pixel and shrinking afterwards. Same accuracy on coco128 (docs/BENCHMARKS.md), less CPU.
         * Linux only (elsewhere the decoder cannot be asked); false decodes every JPEG at full size.
         */
        jpegDctScaling: z.boolean().default(true),
      })
      .strict()
      .prefault({}),
    defaults: z
      .object({
        confidenceThreshold: z.number().gt(0).max(1).default(0.25),
        iouThreshold: z.number().gt(0).max(1).default(0.45),
        maxDetections: z.number().int().min(1).default(300),
      })
      .strict()
      .prefault({}),
    pool: z
      .object({
        /**
         * CPUs to size the defaults below for. auto: the CPUs this process may use (scheduler affinity,
         * capped by a container's cgroup CPU quota); the Helm chart passes the pod's CPU request.
         */
        cpus: z.union([z.literal('auto'), z.number().int().min(1).max(1024)]).default('auto'),
        /** Inference worker threads, each with one ONNX Runtime session per loaded version. auto: one per CPU. */
        workers: z.union([z.literal('auto'), z.number().int().min(1).max(256)]).default('auto'),
        /** ONNX Runtime intra-op threads per session. workers × intraOpThreads = CPUs is the throughput sweet spot. */
        intraOpThreads: z.number().int().min(1).max(64).default(1),
        /**
         * Intra-op threads of one extra session per model, on the first worker, used for a request that
         * arrives while every worker is idle: a lone request gets the idle cores, a busy pool never uses it.
         * auto: the CPUs when they exceed intraOpThreads, else 0 (off). Costs one more session's memory.
         */
        latencyThreads: z.union([z.literal('auto'), z.number().int().min(0).max(256)]).default('auto'),
        /**
         * Requests admitted beyond one per worker (being decoded or waiting for a worker); beyond it calls
         * get RESOURCE_EXHAUSTED at once. Small on purpose: under overload a deep queue only adds latency
         * (accepted-call p99 grows with workers + maxQueue), it does not add throughput. auto: 3 per worker.
         */
        maxQueue: z.union([z.literal('auto'), z.number().int().min(0)]).default('auto'),
        /** Execution providers in order of preference; the log says which one each session really got. */
        executionProviders: z.array(z.enum(EXECUTION_PROVIDERS)).min(1).default(['cpu']),
        /** Inferences run on every session before the version is marked ready. */
        warmupRuns: z.number().int().min(0).max(100).default(2),
        /**
         * ONNX Runtime's CPU memory arena: each session keeps its intermediate buffers between runs. On:
         * 27-35 % more throughput measured (yolox_nano 372-394 vs 285-302 img/s-equivalent runs, yolov8n_int8
         * 133-141 vs 90-107 answers in 6 s at concurrency 8), for ~115 MB more resident memory with two
         * versions loaded and up to ~100 MB more over many hot swaps (docs/BENCHMARKS.md). Off: a run
         * allocates and frees its buffers every time (fresh pages, each faulted in again).
         */
        cpuMemArena: z.boolean().default(true),
        /**
         * Nice value of the inference threads (Linux), so the event loop (gRPC I/O, admission, health)
         * gets the CPU first when every core is busy. 0 leaves them at the process's priority.
         */
        workerNice: z.number().int().min(0).max(19).default(10),
      })
      .strict()
      .prefault({}),
    stream: z
      .object({
        /** Drop policy of streams that do not choose one: block (lossless) or latest (freshest results). */
        defaultDropPolicy: z.enum(['block', 'latest']).default('block'),
        /** Frames of one stream processed at once when the client does not say. */
        defaultMaxInFlight: z.number().int().min(1).default(2),
        /** Upper bound on a client's max_in_flight. */
        maxInFlightLimit: z.number().int().min(1).default(8),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    /** Admin HTTP port, apart from gRPC: /metrics (Prometheus), /healthz, /readyz. */
    admin: z
      .object({
        enabled: z.boolean().default(true),
        /** Loopback by default; containers set 0.0.0.0 so Prometheus and the kubelet can reach it. */
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(9464),
      })
      .strict()
      .prefault({}),
    telemetry: z
      .object({
        /** OpenTelemetry metrics, served on the admin port's /metrics. */
        metrics: z.boolean().default(true),
        tracing: z
          .object({
            /** none: no spans at all. otlp: OTLP over HTTP (protobuf) to endpoint. */
            exporter: z.enum(['none', 'otlp']).default('none'),
            /** OTLP traces URL, e.g. http://otel-collector:4318/v1/traces; default: OTEL_EXPORTER_OTLP_* or localhost:4318. */
            endpoint: z.string().url().optional(),
            serviceName: z.string().min(1).default('sightline'),
            /** Fraction of new traces sampled; a caller's sampled flag (traceparent) is always followed. */
            sampleRatio: z.number().min(0).max(1).default(1),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    /** Data-drift and anomaly monitoring per model version (README, "Drift monitoring"). */
    drift: z
      .object({
        /** false: no features are computed per request and nothing is monitored. */
        enabled: z.boolean().default(true),
        /** Recent requests per model version compared with the reference profile. */
        windowSize: z.number().int().min(1).max(100_000).default(500),
        /** Without a calibration profile, the first this many requests after promotion become the reference. */
        trafficProfileSize: z.number().int().min(1).max(100_000).default(200),
        /** Fewer requests in the window give the verdict insufficient_data (and no gauges). */
        minSamples: z.number().int().min(1).default(30),
        /** PSI at or above which a feature is a warning, and drift. */
        psiWarning: z.number().gt(0).default(0.1),
        psiDrift: z.number().gt(0).default(0.25),
        /** A warning or drift stands only if the chi-square test of the binned counts has p < alpha; 1 turns the check off. */
        alpha: z.number().gt(0).max(1).default(0.01),
        /** Anomaly fences: a request is anomalous outside [p01 − k·IQR, p99 + k·IQR] of the reference. */
        anomalyK: z.number().min(0).default(1.5),
        /** Drift gauges are recomputed at most this often per model version. */
        updateIntervalMs: z.number().int().min(10).default(10_000),
        /** At most one anomaly log line per model version per interval. */
        anomalyLogIntervalMs: z.number().int().min(0).default(60_000),
      })
      .strict()
      .refine((d) => d.psiWarning <= d.psiDrift, {
        message: 'psiWarning must not exceed psiDrift',
        path: ['psiWarning'],
      })
      .prefault({}),
    /** The Open Inference Protocol (KServe v2) on the gRPC port and the HTTP port (README, "Open Inference Protocol"). */
    oip: z
      .object({
        /** Most images (elements of the IMAGE input) in one ModelInfer request. */
        maxImagesPerRequest: z.number().int().min(1).max(4096).default(64),
        /** Images of one request decoded or inferred at once (the request's own bound in the admission budget). */
        maxImagesInFlight: z.number().int().min(1).max(64).default(2),
      })
      .strict()
      .prefault({}),
    /** HTTP port: Open Inference Protocol REST and POST /v1/detect. Off by default; TLS and auth as gRPC's. */
    http: z
      .object({
        enabled: z.boolean().default(false),
        /** Loopback by default; containers set 0.0.0.0. */
        host: z.string().min(1).default('127.0.0.1'),
        /** 8000 as Triton's HTTP port, where OIP clients look by default; 0 picks a free port. */
        port: z.number().int().min(0).max(65535).default(8000),
        /** Largest request body (an image, or an OIP request with its tensors); refused with 413 beyond it. */
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .default(32 * MiB),
        /** Deadline of one request; past it the answer is 504 and unstarted work is dropped. */
        requestTimeoutMs: z.number().int().min(1).default(30_000),
      })
      .strict()
      .prefault({}),
    /** Time allowed for in-flight calls to finish on SIGTERM before they are cancelled. */
    shutdownGraceMs: z.number().int().min(0).default(10_000),
  })
  .strict();

/** The configuration as parsed, before config/sizing.ts turns the pool's 'auto' values into numbers. */
export type ParsedConfig = z.infer<typeof ConfigSchema>;
export type PoolConfig = Readonly<
  Omit<ParsedConfig['pool'], 'cpus' | 'workers' | 'latencyThreads' | 'maxQueue'> & {
    cpus: number;
    workers: number;
    latencyThreads: number;
    maxQueue: number;
  }
>;

/** How the pool was sized: what the start-up log says. */
export interface PoolSizing {
  readonly budget: CpuBudget;
  /** Keys of config.pool given explicitly (the rest were sized from the CPUs). */
  readonly explicit: readonly string[];
  /** libuv's thread pool as this process started it (UV_THREADPOOL_SIZE, or libuv's 4). */
  readonly uvThreadpoolSize: number;
}

export type Config = Omit<ParsedConfig, 'pool'> & { readonly pool: PoolConfig; readonly sizing: PoolSizing };
export type ConfigInput = z.input<typeof ConfigSchema>;
export type { CpuBudget };
export type ModelSourceConfig = z.infer<typeof ModelSource>;
