import type { Candidates, DecodeOptions, FamilyName, LetterboxSpec, ModelMeta, TensorInfo } from '../types.js';

/**
 * The contract every model family implements. A family recognises its outputs, says how its input
 * must be prepared, and decodes raw outputs into candidate boxes in model-input pixels. Pure: no I/O.
 */
export interface Family {
  readonly name: FamilyName;
  /** True when these outputs (and metadata) look like this family. */
  matches(outputs: readonly TensorInfo[], meta: ModelMeta): boolean;
  /** Number of classes the outputs encode. Only called when matches() is true (or the family is forced). */
  numClasses(outputs: readonly TensorInfo[]): number;
  readonly letterbox: LetterboxSpec;
  /**
   * Decode raw output tensors (same order as `outputs`) into candidates in model-input pixels.
   * Must not allocate per candidate; may reuse internal buffers between calls of the same instance.
   */
  decode(
    data: readonly Float32Array[],
    outputs: readonly TensorInfo[],
    meta: ModelMeta,
    opts: DecodeOptions,
  ): Candidates;
}
