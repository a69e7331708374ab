/**
 * Runs inside a worker_thread: owns ONNX Runtime sessions (one per loaded model version) and does the
 * CPU-heavy part of a request off the main thread: tensor conversion, session.run, decoding, NMS and
 * mapping boxes back. Imports only from inference/ (each import is loaded again in every thread).
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';
import ort from 'onnxruntime-node';
import { serializeError, SightlineError } from '../../errors.js';
import type { Family } from '../families/family.js';
import { resolveFamily, resolveNames } from '../families/index.js';
import { nms } from '../nms/nms.js';
import { readOnnxMetadata } from '../onnx/metadata.js';
import { computeLetterbox, mapBoxesToSource } from '../preprocess/letterbox.js';
import { TensorArena } from '../preprocess/arena.js';
import { JpegDecoder } from '../preprocess/jpeg-turbo.js';
import { sourceToTensor } from '../preprocess/to-tensor.js';
import { sampleLetterboxed } from '../preprocess/resample.js';
import { lowerThreadPriority } from './priority.js';
import type {
  FromWorker,
  LoadOptions,
  ModelInfo,
  RequestType,
  RunInput,
  RunOutput,
  TensorInput,
  TensorRunOutput,
  ToWorker,
  WorkerReplies,
  ExecutionProvider,
} from '../pool/messages.js';
import type { Detection, ModelMeta, TensorInfo } from '../types.js';

interface Loaded {
  session: ort.InferenceSession;
  /** The latency session (LoadOptions.latencyThreads): same model, more intra-op threads, for a lone request. */
  wide: ort.InferenceSession | null;
  family: Family;
  info: ModelInfo;
  meta: ModelMeta;
}

const port = parentPort;
if (!port) throw new Error('inference worker must run in a worker thread');
// Before any session exists, so ONNX Runtime's threads inherit it.
const priority = lowerThreadPriority((workerData as { nice?: number } | null)?.nice ?? 0);
const sessions = new Map<string, Loaded>();
const jpeg = new JpegDecoder();
/** This worker's pixels and input tensor, reused from request to request (one request at a time). */
const arena = new TensorArena();

const now = () => performance.now();

/**
 * A full collection right after a model is unloaded. The model's bytes and tensors are external
 * memory that V8 would otherwise free only under heap pressure, which a worker holding a handful of
 * small objects rarely feels: without this, RSS kept growing by ~10 MB per hot swap.
 */
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

async function createSession(
  model: Uint8Array,
  opts: LoadOptions,
  threads = opts.intraOpThreads,
): Promise<{ session: ort.InferenceSession; provider: ExecutionProvider }> {
  const base: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    enableCpuMemArena: opts.cpuMemArena,
    // Idle intra-op threads sleep instead of spinning: the latency session shares its cores with the
    // other workers, which must not lose CPU to threads waiting for work.
    ...(threads > 1 && { extra: { session: { intra_op: { allow_spinning: '0' } } } }),
  };
  const errors: string[] = [];
  // Try providers in order of preference; ORT refuses at creation when a provider's libraries are
  // missing, so the first that succeeds is the one really in use.
  for (const ep of opts.executionProviders) {
    try {
      const session = await ort.InferenceSession.create(model, { ...base, executionProviders: [ep] });
      return { session, provider: ep };
    } catch (e) {
      errors.push(`${ep}: ${(e as Error).message}`);
    }
  }
  if (!opts.executionProviders.includes('cpu')) {
    throw new SightlineError(
      'UNSUPPORTED_MODEL',
      `no configured execution provider could load the model (${errors.join('; ')})`,
    );
  }
  throw new SightlineError('UNSUPPORTED_MODEL', `ONNX Runtime cannot load the model: ${errors.join('; ')}`);
}

function tensorInfos(meta: readonly ort.InferenceSession.ValueMetadata[]): TensorInfo[] {
  return meta.map((m) => ({
    name: m.name,
    dims: m.isTensor ? m.shape.map((d) => (typeof d === 'number' ? d : -1)) : [],
  }));
}

async function load(key: string, model: Uint8Array, opts: LoadOptions): Promise<ModelInfo> {
  const t0 = now();
  const props = readOnnxMetadata(model);
  const { session, provider } = await createSession(model, opts);
  let wide: ort.InferenceSession | null = null;
  try {
    const inputs = tensorInfos(session.inputMetadata);
    if (inputs.length !== 1 || inputs[0]!.dims.length !== 4) {
      throw new SightlineError(
        'UNSUPPORTED_MODEL',
        `expected one image input of rank 4 (NCHW), got ${inputs.map((i) => `${i.name}[${i.dims.join(',')}]`).join(', ')}`,
      );
    }
    const input = inputs[0]!;
    const [, c, h, w] = input.dims as [number, number, number, number];
    if (c !== 3)
      throw new SightlineError('UNSUPPORTED_MODEL', `input ${input.name} has ${c} channels; 3 (RGB/BGR) are supported`);
    // A dynamic spatial size falls back to Ultralytics' imgsz metadata.
    const [inputHeight, inputWidth] = h > 0 && w > 0 ? [h, w] : imgszFromProps(props, input);
    const meta: ModelMeta = { props, inputWidth, inputHeight };
    const outputs = tensorInfos(session.outputMetadata);
    const family = resolveFamily(outputs, meta, opts.family);
    const numClasses = family.numClasses(outputs);
    const names = resolveNames(props, numClasses, opts.labelsText);
    const loadMs = now() - t0;
    const info: ModelInfo = {
      family: family.name,
      inputName: input.name,
      inputWidth,
      inputHeight,
      letterbox: family.letterbox,
      outputs,
      numClasses,
      names,
      props,
      provider,
      loadMs,
      warmupMs: 0,
    };
    if ((opts.latencyThreads ?? 0) > opts.intraOpThreads)
      wide = (await createSession(model, opts, opts.latencyThreads)).session;
    const loaded: Loaded = {
      session,
      wide,
      family,
      info,
      meta,
    };
    info.warmupMs = await warm(loaded, opts.warmupRuns);
    const old = sessions.get(key);
    sessions.set(key, loaded);
    if (old) await release(old);
    return info;
  } catch (e) {
    await session.release();
    await wide?.release();
    throw e;
  }
}

const release = async (m: Loaded) => {
  await m.session.release();
  await m.wide?.release();
};

/** Warm-up: the first runs allocate arenas and pick kernels; pay that before taking traffic (both sessions). */
async function warm(m: Loaded, runs: number): Promise<number> {
  const t0 = now();
  const { inputWidth: w, inputHeight: h } = m.info;
  const grey = new Uint8Array(w * h * 3).fill(114);
  const geometry = computeLetterbox(w, h, w, h, m.family.letterbox.placement);
  for (const wide of m.wide ? [false, true] : [false]) {
    for (let i = 0; i < runs; i++) {
      await run(m, {
        source: { kind: 'rgb', pixels: grey, width: w, height: h, orientation: 1 },
        geometry,
        decode: { confThreshold: 0.25, classFilter: null, multiLabel: false },
        nms: { iouThreshold: 0.45, maxDetections: 300, agnostic: false },
        wide,
      });
    }
  }
  return now() - t0;
}

function imgszFromProps(props: Record<string, string>, input: TensorInfo): [number, number] {
  const m = /(\d+)\D+(\d+)/.exec(props['imgsz'] ?? '');
  if (m) return [Number(m[1]), Number(m[2])];
  throw new SightlineError(
    'UNSUPPORTED_MODEL',
    `input ${input.name}[${input.dims.join(',')}] has a dynamic size and the model has no imgsz metadata`,
  );
}

/**
 * The pool gives a worker one job at a time, so runs never overlap; the chain makes that an invariant
 * of the worker too, because each run's tensor lives in the one arena until its inference is over.
 */
let arenaTurn: Promise<unknown> = Promise.resolve();
function run(m: Loaded, input: RunInput): Promise<RunOutput> {
  const turn = arenaTurn.then(() => runExclusive(m, input));
  arenaTurn = turn.catch(() => undefined);
  return turn;
}

async function runExclusive(m: Loaded, input: RunInput): Promise<RunOutput> {
  const { inputWidth: w, inputHeight: h } = m.info;
  if (input.geometry.dstWidth !== w || input.geometry.dstHeight !== h) {
    throw new SightlineError(
      'INTERNAL',
      `geometry is for a ${input.geometry.dstWidth}x${input.geometry.dstHeight} input, the model takes ${w}x${h}`,
    );
  }
  const {
    tensor,
    timing: { decodeMs, preprocessMs },
  } = sourceToTensor(input.source, input.geometry, m.family.letterbox, jpeg, arena);
  const sample = input.sampleStep
    ? sampleLetterboxed(tensor, input.geometry, m.family.letterbox, input.sampleStep)
    : undefined;
  const t0 = now();
  // The tensor is a view into the arena; nothing else touches the arena until this run is over.
  const feeds = { [m.info.inputName]: new ort.Tensor('float32', tensor, [1, 3, h, w]) };
  const latencySession = !!(input.wide && m.wide);
  const results = await (latencySession ? m.wide! : m.session).run(feeds);
  const t1 = now();
  const data = m.info.outputs.map((o) => {
    const t = results[o.name];
    if (!t || !(t.data instanceof Float32Array))
      throw new SightlineError('INTERNAL', `output ${o.name} is missing or not float32`);
    return t.data;
  });
  const cands = m.family.decode(data, m.info.outputs, m.meta, input.decode);
  const keep = nms(cands, input.nms);
  const n = keep.length;
  const boxes = new Float32Array(n * 4);
  for (let i = 0; i < n; i++) boxes.set(cands.boxes.subarray(keep[i]! * 4, keep[i]! * 4 + 4), i * 4);
  mapBoxesToSource(boxes, n, input.geometry);
  const detections: Detection[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const k = keep[i]!;
    const classId = cands.classes[k]!;
    detections[i] = {
      classId,
      label: m.info.names[classId] ?? `class_${classId}`,
      confidence: cands.scores[k]!,
      xMin: boxes[i * 4]!,
      yMin: boxes[i * 4 + 1]!,
      xMax: boxes[i * 4 + 2]!,
      yMax: boxes[i * 4 + 3]!,
    };
  }
  for (const t of Object.values(results)) t.dispose?.();
  return {
    detections,
    timing: { decodeMs, preprocessMs, inferenceMs: t1 - t0, postprocessMs: now() - t1 },
    latencySession,
    ...(sample ? { sample } : {}),
  };
}

/** The raw-tensor path: the caller's own input tensor through the session, the raw outputs back. */
async function infer(m: Loaded, input: TensorInput): Promise<TensorRunOutput> {
  const t0 = now();
  const results = await m.session.run({ [m.info.inputName]: new ort.Tensor('float32', input.data, input.dims) });
  const inferenceMs = now() - t0;
  const outputs = m.info.outputs.map((o) => {
    const t = results[o.name];
    if (!t || !(t.data instanceof Float32Array))
      throw new SightlineError('INTERNAL', `output ${o.name} is missing or not float32`);
    // A copy: the session's buffers are released below, the copy is cloned to the main thread.
    return { name: o.name, dims: [...t.dims], data: t.data.slice() };
  });
  for (const t of Object.values(results)) t.dispose?.();
  return { outputs, inferenceMs };
}

function loaded(key: string): Loaded {
  const m = sessions.get(key);
  if (!m) throw new SightlineError('PRECONDITION', `model ${key} is not loaded on this worker`);
  return m;
}

/** One handler per request type, each returning what messages.ts says its reply carries. */
const HANDLERS: { [K in RequestType]: (msg: Extract<ToWorker, { type: K }>) => Promise<WorkerReplies[K]> } = {
  load: (msg) => load(msg.key, msg.model, msg.options),
  warm: async (msg) => warm(loaded(msg.key), msg.runs),
  run: async (msg) => run(loaded(msg.key), msg.input),
  infer: async (msg) => infer(loaded(msg.key), msg.input),
  unload: async (msg) => {
    const m = sessions.get(msg.key);
    sessions.delete(msg.key);
    if (m) await release(m);
    collectGarbage();
    return null;
  },
};

const handle = (msg: ToWorker) => (HANDLERS[msg.type] as (m: ToWorker) => Promise<WorkerReplies[RequestType]>)(msg);

const sampleBuffers = (v: unknown): ArrayBuffer[] => {
  const px = (v as Partial<RunOutput> | null)?.sample?.pixels;
  return px ? [px.buffer as ArrayBuffer] : [];
};

port.on('message', (msg: ToWorker) => {
  handle(msg).then(
    // A run's pixel sample moves back instead of being copied.
    (value) =>
      port.postMessage({ type: 'result', id: msg.id, ok: true, value } satisfies FromWorker, sampleBuffers(value)),
    (e: unknown) =>
      port.postMessage({ type: 'result', id: msg.id, ok: false, error: serializeError(e) } satisfies FromWorker),
  );
});
port.postMessage({ type: 'ready', priority } satisfies FromWorker);
