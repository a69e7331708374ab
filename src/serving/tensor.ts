/**
 * The models as tensors, for callers that speak in tensors (the Open Inference Protocol): what a model
 * version takes and returns, which versions are loaded, and one inference on the model's own input
 * tensor (preprocessed by the caller) returning its raw outputs. The image path stays DetectService's.
 */
import { SightlineError } from '../errors.js';
import type { FamilyName, InferencePool, TensorOutput, Ticket } from '../inference/index.js';
import { isWarm, type LoadedVersion, type ModelManager } from './models.js';

export interface TensorShape {
  name: string;
  /** -1 marks a dimension of variable size. */
  dims: number[];
}

export interface ModelDescription {
  model: string;
  /** The version a request naming (model, version) is served by now. */
  version: number;
  /** Every loaded, warmed-up version of the model, in order. */
  versions: number[];
  family: FamilyName;
  input: TensorShape;
  outputs: TensorShape[];
  /** Class names, by class id. */
  names: readonly string[];
}

export interface TensorResult {
  model: string;
  version: number;
  outputs: TensorOutput[];
  queueMs: number;
  inferenceMs: number;
  totalMs: number;
}

/** A loaded version as an index entry. */
export interface LoadedVersionView {
  model: string;
  version: number;
  state: LoadedVersion['state'];
  active: boolean;
  error: string | null;
}

export class TensorService {
  constructor(
    private readonly models: ModelManager,
    private readonly pool: InferencePool,
  ) {}

  /** What (model, version) takes and returns (0: the active version); throws the status a request would get when it resolves to none. */
  describe(model: string, version: number): ModelDescription {
    const v = this.models.acquire(model, version);
    this.models.release(v);
    const { info } = v;
    return {
      model: v.name,
      version: v.version,
      versions: this.models
        .loaded(v.name)
        .filter(isWarm)
        .map((l) => l.version)
        .sort((a, b) => a - b),
      family: info.family,
      input: { name: info.inputName, dims: [1, 3, info.inputHeight, info.inputWidth] },
      outputs: info.outputs.map((o) => ({ name: o.name, dims: [...o.dims] })),
      names: info.names,
    };
  }

  /** True when (model, version) resolves to a loaded, warmed-up version. */
  isReady(model: string, version: number): boolean {
    try {
      this.models.release(this.models.acquire(model, version));
      return true;
    } catch {
      return false;
    }
  }

  /** Every version this process has loaded (or is loading), per model. */
  loaded(): LoadedVersionView[] {
    return this.models.list().flatMap((m) =>
      m.versions.map((v) => ({
        model: m.name,
        version: v.version,
        state: v.state,
        active: m.active === v.version,
        error: v.error,
      })),
    );
  }

  /**
   * One inference on the model's own input tensor, admitted like an image request (refused at once
   * with OVERLOADED when the server is at capacity). `dims` must be the model's input shape.
   */
  async run(
    model: string,
    version: number,
    data: Float32Array,
    dims: readonly number[],
    signal: AbortSignal,
  ): Promise<TensorResult> {
    const t0 = performance.now();
    const v = this.models.acquire(model, version);
    let ticket: Ticket | undefined;
    try {
      const want = [1, 3, v.info.inputHeight, v.info.inputWidth];
      if (dims.length !== want.length || dims.some((d, i) => d !== want[i])) {
        throw new SightlineError(
          'INVALID_INPUT',
          `input ${v.info.inputName} of model ${v.name} has shape [${want.join(', ')}]; got [${dims.join(', ')}]`,
          { field: 'shape' },
        );
      }
      if (data.length !== want.reduce((a, b) => a * b, 1)) {
        throw new SightlineError(
          'INVALID_INPUT',
          `input ${v.info.inputName} has ${data.length} elements; its shape [${want.join(', ')}] needs ${want.reduce((a, b) => a * b, 1)}`,
          { field: 'contents' },
        );
      }
      signal.throwIfAborted();
      ticket = this.pool.admit();
      const r = await this.pool.infer(v.key, { data, dims: want }, signal, ticket);
      return {
        model: v.name,
        version: v.version,
        outputs: r.outputs,
        queueMs: r.queueMs,
        inferenceMs: r.inferenceMs,
        totalMs: performance.now() - t0,
      };
    } finally {
      ticket?.release();
      this.models.release(v);
    }
  }
}
