/**
 * Open Inference Protocol tensors, independent of the wire (gRPC messages or HTTP JSON and binary
 * data): the element types Sightline accepts and answers, and the raw encoding both wires share
 * (little-endian, row-major, no padding; a BYTES element is a 4-byte little-endian length, then its bytes).
 */
import { SightlineError } from '../../errors.js';

/** Parameter values as the protocol carries them (bool, int64, uint64, double, string). */
export type ParamValue = boolean | number | bigint | string;
export type Params = Readonly<Record<string, ParamValue>>;

/** Element data of the tensors Sightline reads and writes. */
export type TensorData = Float32Array | Int32Array | Uint8Array[];

export interface InputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters: Params;
  data: TensorData;
}

export interface OutputTensor {
  name: string;
  datatype: 'FP32' | 'INT32' | 'BYTES';
  shape: number[];
  data: TensorData;
}

const elementCount = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A shape from the wire: non-negative integers only (int64 values arrive as bigint or number). */
export function toShape(dims: readonly (bigint | number)[], what: string): number[] {
  return dims.map((d) => {
    const n = Number(d);
    if (!Number.isSafeInteger(n) || n < 0)
      throw new SightlineError('INVALID_INPUT', `${what}: shape dimension ${String(d)} is not a non-negative integer`, {
        field: 'shape',
      });
    return n;
  });
}

export function unsupportedDatatype(name: string, datatype: string): SightlineError {
  return new SightlineError(
    'INVALID_INPUT',
    `input ${name}: datatype ${datatype || '(empty)'} is not accepted; IMAGE takes BYTES (encoded images) and the model's own input takes FP32`,
    { field: 'datatype' },
  );
}

/** Splits raw BYTES contents into their elements (each a 4-byte little-endian length, then the bytes). */
function splitBytes(raw: Uint8Array, what: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  for (let o = 0; o < raw.byteLength;) {
    if (o + 4 > raw.byteLength)
      throw new SightlineError(
        'INVALID_INPUT',
        `${what}: raw BYTES contents end inside a 4-byte length prefix (at byte ${o} of ${raw.byteLength})`,
        { field: 'raw_input_contents' },
      );
    const n = view.getUint32(o, true);
    o += 4;
    if (o + n > raw.byteLength)
      throw new SightlineError(
        'INVALID_INPUT',
        `${what}: a BYTES element of ${n} bytes runs past the end of the raw contents (${raw.byteLength - o} left)`,
        { field: 'raw_input_contents' },
      );
    out.push(raw.subarray(o, o + n));
    o += n;
  }
  return out;
}

/** Raw contents of a tensor of `datatype` (BYTES or FP32; anything else is refused). */
export function fromRaw(name: string, datatype: string, raw: Uint8Array): TensorData {
  if (datatype === 'BYTES') return splitBytes(raw, `input ${name}`);
  if (datatype === 'FP32') {
    if (raw.byteLength % 4 !== 0)
      throw new SightlineError(
        'INVALID_INPUT',
        `input ${name}: raw FP32 contents of ${raw.byteLength} bytes are not a whole number of 4-byte elements`,
        { field: 'raw_input_contents' },
      );
    // A copy: aligned, and in the host's byte order (little-endian on every platform Node supports).
    const out = new Float32Array(raw.byteLength / 4);
    new Uint8Array(out.buffer).set(raw);
    return out;
  }
  throw unsupportedDatatype(name, datatype);
}

/** The raw encoding of a tensor's data. */
export function toRaw(data: TensorData): Buffer {
  if (Array.isArray(data)) {
    const out = Buffer.allocUnsafe(data.reduce((a, e) => a + 4 + e.byteLength, 0));
    let o = 0;
    for (const e of data) {
      out.writeUInt32LE(e.byteLength, o);
      out.set(e, o + 4);
      o += 4 + e.byteLength;
    }
    return out;
  }
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** Checks that a tensor holds as many elements as its shape says. */
export function checkElementCount(t: InputTensor): void {
  const want = elementCount(t.shape);
  if (t.data.length !== want) {
    throw new SightlineError(
      'INVALID_INPUT',
      `input ${t.name}: shape [${t.shape.join(', ')}] holds ${want} element(s), but the contents hold ${t.data.length}`,
      { field: 'shape' },
    );
  }
}
