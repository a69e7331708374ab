/**
 * Reads ONNX `ModelProto.metadata_props` (field 14) straight from the protobuf wire format. Only the
 * top level is walked: other fields, the multi-megabyte graph (field 7) included, are skipped by
 * their length prefix, so this costs microseconds on a 4 MB model and needs no ONNX schema.
 */
import { SightlineError } from '../../errors.js';

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

const FIELD_GRAPH = 7;
const FIELD_METADATA_PROPS = 14;
const ENTRY_KEY = 1;
const ENTRY_VALUE = 2;

/**
 * Wire types of the ModelProto fields we know (onnx.proto3). A known field arriving with another
 * wire type means the bytes are not an ONNX model, which catches most non-protobuf input early.
 */
const MODEL_FIELD_WIRE: ReadonlyMap<number, number> = new Map([
  [1, WIRE_VARINT], // ir_version
  [2, WIRE_LEN], // producer_name
  [3, WIRE_LEN], // producer_version
  [4, WIRE_LEN], // domain
  [5, WIRE_VARINT], // model_version
  [6, WIRE_LEN], // doc_string
  [7, WIRE_LEN], // graph
  [8, WIRE_LEN], // opset_import
  [14, WIRE_LEN], // metadata_props
  [20, WIRE_LEN], // training_info
  [25, WIRE_LEN], // functions
  [26, WIRE_LEN], // configuration
]);

const utf8 = new TextDecoder('utf-8');

/** A bounds-checked cursor over a byte range; every failure names the offset. */
class Cursor {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** Varints here are lengths, tags and small ints: decode exactly up to 2^53 using floats. */
  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw bad(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw bad(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** Skips one value of the given wire type; groups (3, 4) are not used by ONNX and are refused. */
  skip(wire: number, at: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_I64:
        this.advance(8, at);
        return;
      case WIRE_LEN:
        this.advance(this.varint(), at);
        return;
      case WIRE_I32:
        this.advance(4, at);
        return;
      default:
        throw bad(`invalid wire type ${wire} at byte ${at}`);
    }
  }

  advance(n: number, at: number): void {
    if (n > this.end - this.pos) throw bad(`field at byte ${at} runs past the end of its message`);
    this.pos += n;
  }
}

function bad(detail: string): SightlineError {
  return new SightlineError('UNSUPPORTED_MODEL', `not an ONNX model (protobuf parse failed: ${detail})`, { detail });
}

/** Parses one StringStringEntryProto; unknown fields inside it are skipped. */
function readEntry(c: Cursor, start: number, end: number): [string, string] {
  const sub = new Cursor(c.buf, start, end);
  let key = '';
  let value = '';
  while (sub.pos < end) {
    const at = sub.pos;
    const tag = sub.varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw bad(`field number 0 at byte ${at}`);
    if ((field === ENTRY_KEY || field === ENTRY_VALUE) && wire === WIRE_LEN) {
      const len = sub.varint();
      const s = sub.pos;
      sub.advance(len, at);
      const text = utf8.decode(c.buf.subarray(s, s + len));
      if (field === ENTRY_KEY) key = text;
      else value = text;
    } else {
      sub.skip(wire, at);
    }
  }
  return [key, value];
}

/**
 * Returns the model's metadata_props as a plain record (later duplicates win, as in ORT). A model
 * without metadata gives {}. Throws UNSUPPORTED_MODEL when the bytes are not a protobuf message.
 */
export function readOnnxMetadata(model: Uint8Array): Record<string, string> {
  return walkModel(model).props;
}

/**
 * Throws UNSUPPORTED_MODEL unless the bytes are an ONNX ModelProto with a graph: the cheap check
 * `sightline serve` makes before anything listens (an image or a text file given as --model). Whether
 * ONNX Runtime can load it and a family matches is only known once a worker has loaded it.
 */
export function assertOnnxModel(model: Uint8Array): void {
  if (!walkModel(model).graph) throw bad('no graph (ModelProto field 7)');
}

/** One pass over the top-level fields: the metadata, and whether there is a graph. */
function walkModel(model: Uint8Array): { props: Record<string, string>; graph: boolean } {
  if (model.length === 0) throw bad('empty file');
  const c = new Cursor(model, 0, model.length);
  const props: Record<string, string> = {};
  let graph = false;
  while (c.pos < c.end) {
    const at = c.pos;
    const tag = c.varint();
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) throw bad(`field number 0 at byte ${at}`);
    const expected = MODEL_FIELD_WIRE.get(field);
    if (expected !== undefined && expected !== wire) {
      throw bad(`ModelProto field ${field} has wire type ${wire} at byte ${at}`);
    }
    if (field === FIELD_GRAPH) graph = true;
    if (field === FIELD_METADATA_PROPS) {
      const len = c.varint();
      const start = c.pos;
      c.advance(len, at);
      const [k, v] = readEntry(c, start, start + len);
      // defineProperty, not assignment: a key named __proto__ must stay plain data
      Object.defineProperty(props, k, { value: v, enumerable: true, writable: true, configurable: true });
    } else {
      c.skip(wire, at);
    }
  }
  return { props, graph };
}
