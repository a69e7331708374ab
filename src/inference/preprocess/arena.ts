/**
 * One thread's working memory for the image it is preparing: the resample's column tables, the model's
 * input tensor and the decoded pixels, in one WebAssembly memory. libjpeg-turbo decodes into it, the
 * SIMD resample kernel (resample.wat) reads and writes it, and ONNX Runtime reads the tensor from it:
 * no copy between the stages, and no fresh buffer (page faults) per image.
 *
 * Views are valid until the next reserve(): growing the memory detaches every earlier view. The memory
 * never shrinks, so pixels over RETAINED_PIXEL_BYTES are not taken in (the caller decodes those into a
 * buffer of their own and the JavaScript resample runs): a rare huge photo does not pin its size for the
 * life of the worker.
 */
import { WASM_BASE64 } from './resample-wasm.js';

/** Decoded images up to this size live in the arena (16 MP of RGB, so a 12 MP phone photo's 36 MB). */
export const RETAINED_PIXEL_BYTES = 16_000_000 * 3;

/** Widest resized row the kernel's tables hold (three 4-byte entries per output column). */
export const MAX_TABLE_COLUMNS = 8192;
const TABLE_BYTES = MAX_TABLE_COLUMNS * 12;
const PAGE = 65536;

/** resample.wat's `row`: one output row (see the .wat for the arguments). */
export type RowKernel = (
  n: number,
  c0: number,
  dc: number,
  wx: number,
  r0: number,
  dr: number,
  wy: number,
  outR: number,
  outG: number,
  outB: number,
  mR: number,
  mG: number,
  mB: number,
  aR: number,
  aG: number,
  aB: number,
) => void;

export interface ArenaViews {
  /** The model input, 3 x dstHeight x dstWidth floats. */
  tensor: Float32Array;
  /** Room for the decoded pixels (plus the spare bytes the kernel reads past the last pixel), or null
   *  when they are too large to keep in the arena. */
  pixels: Buffer | null;
}

// The few WebAssembly JS API members used here (Node's global; @types/node 20 does not declare it).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
};

let compiled: object | null = null;

export class TensorArena {
  private readonly memory: WasmMemory;
  readonly row: RowKernel;

  constructor() {
    compiled ??= new WebAssembly.Module(Buffer.from(WASM_BASE64, 'base64'));
    const instance = new WebAssembly.Instance(compiled);
    const exports = instance.exports as unknown as { memory: WasmMemory; row: RowKernel };
    this.memory = exports.memory;
    this.row = exports.row;
  }

  /** Views for a tensor of `tensorFloats` and `pixelBytes` of decoded pixels, growing the memory if needed. */
  reserve(tensorFloats: number, pixelBytes: number): ArenaViews {
    const tensorAt = TABLE_BYTES;
    const pixelsAt = tensorAt + tensorFloats * 4;
    const keep = pixelBytes <= RETAINED_PIXEL_BYTES;
    // Four spare bytes: the kernel reads each pixel as one 32-bit word.
    const end = keep ? pixelsAt + pixelBytes + 4 : pixelsAt;
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    const buf = this.memory.buffer;
    return {
      tensor: new Float32Array(buf, tensorAt, tensorFloats),
      pixels: keep ? Buffer.from(buf, pixelsAt, pixelBytes + 4) : null,
    };
  }

  /** The column tables (first source column's byte offset, step to the second, its weight), `n` columns. */
  tables(n: number): { c0: Int32Array; dc: Int32Array; wx: Float32Array; at: [number, number, number] } {
    const buf = this.memory.buffer;
    const at: [number, number, number] = [0, n * 4, n * 8];
    return {
      c0: new Int32Array(buf, at[0], n),
      dc: new Int32Array(buf, at[1], n),
      wx: new Float32Array(buf, at[2], n),
      at,
    };
  }

  /** Whether `view` lies in this arena's memory (as it is now). */
  holds(view: ArrayBufferView): boolean {
    return view.buffer === this.memory.buffer;
  }
}
