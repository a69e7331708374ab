/**
 * The Open Inference Protocol's REST routes (/v2/...), with the binary tensor data extension: a request
 * whose `Inference-Header-Content-Length` header is N carries N bytes of JSON, then the binary data of
 * the inputs whose `binary_data_size` parameter says how many bytes are theirs (raw encoding, BYTES
 * elements length-prefixed). Outputs come back as JSON, or as binary when an output asks for
 * `binary_data: true` or the request for `binary_data_output: true`.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SightlineError } from '../../errors.js';
import type { Metrics } from '../../telemetry/metrics.js';
import { observeImage } from '../image-metrics.js';
import { clientRequestId } from './detect.js';
import {
  fromRaw,
  IMAGE_INPUT,
  toRaw,
  unsupportedDatatype,
  type InferRequest,
  type InputTensor,
  type OpenInference,
  type OutputTensor,
  type Params,
  type ParamValue,
} from '../oip/index.js';

const BINARY_HEADER = 'inference-header-content-length';

export interface OipRouteDeps {
  oip: OpenInference;
  isReady: () => boolean;
  serverVersion: string;
  metrics: Metrics;
  signalOf: (req: FastifyRequest) => AbortSignal;
}

const bad = (message: string, field = 'body') => new SightlineError('INVALID_INPUT', message, { field });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function params(v: unknown, where: string): Params {
  if (v === undefined) return {};
  if (!isObject(v)) throw bad(`${where}.parameters must be an object`);
  for (const [k, p] of Object.entries(v)) {
    if (!['boolean', 'number', 'string'].includes(typeof p))
      throw bad(`${where}.parameters.${k} must be a boolean, a number or a string`);
  }
  return v as Record<string, ParamValue>;
}

/** JSON tensor data: flat or nested arrays, row-major. */
function flat(data: unknown, where: string): unknown[] {
  if (!Array.isArray(data)) throw bad(`${where}.data must be an array`);
  return data.flat(Infinity as 1);
}

function jsonData(name: string, datatype: string, data: unknown, where: string): InputTensor['data'] {
  const values = flat(data, where);
  if (datatype === 'FP32') {
    if (!values.every((x) => typeof x === 'number')) throw bad(`${where}.data: FP32 elements must be numbers`);
    return Float32Array.from(values as number[]);
  }
  if (datatype === 'BYTES') {
    // Encoded images cannot be JSON strings as they are: IMAGE elements in JSON are base64.
    return values.map((x) => {
      if (typeof x !== 'string') throw bad(`${where}.data: BYTES elements must be strings`);
      if (name === IMAGE_INPUT && !/^[A-Za-z0-9+/_-]*={0,2}$/.test(x))
        throw bad(
          `${where}.data: ${IMAGE_INPUT} elements in JSON are base64-encoded images (or send them as binary data)`,
        );
      return name === IMAGE_INPUT ? Buffer.from(x, 'base64') : Buffer.from(x, 'utf8');
    });
  }
  throw unsupportedDatatype(name, datatype);
}

interface ParsedInfer {
  request: InferRequest;
  /** Names of the outputs to answer as binary data (all of them: "*"). */
  binary: Set<string>;
}

/** An inference request body (JSON, optionally followed by binary tensor data) as a neutral request. */
function parseInferBody(body: Buffer, headerLength: string | undefined, model: string, version: string): ParsedInfer {
  let jsonEnd = body.length;
  if (headerLength !== undefined) {
    jsonEnd = Number(headerLength);
    if (!Number.isInteger(jsonEnd) || jsonEnd < 0 || jsonEnd > body.length)
      throw bad(
        `Inference-Header-Content-Length ${headerLength} is not a length within the body (${body.length} bytes)`,
        'headers',
      );
  }
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, jsonEnd).toString('utf8'));
  } catch (e) {
    throw bad(`the request is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(json)) throw bad('the request must be a JSON object with "inputs"');
  if (!Array.isArray(json.inputs)) throw bad('"inputs" must be an array of tensors');
  let offset = jsonEnd;
  const inputs: InputTensor[] = json.inputs.map((t: unknown, i: number) => {
    const where = `inputs[${i}]`;
    if (!isObject(t) || typeof t.name !== 'string' || typeof t.datatype !== 'string' || !Array.isArray(t.shape))
      throw bad(`${where} must have a name, a datatype and a shape`);
    const shape = t.shape.map((d) => {
      if (!Number.isSafeInteger(d) || (d as number) < 0)
        throw bad(`${where}.shape must hold non-negative integers`, 'shape');
      return d as number;
    });
    const p = params(t.parameters, where);
    const size = p.binary_data_size;
    let data: InputTensor['data'];
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0 || offset + size > body.length) {
        throw bad(
          `${where}.parameters.binary_data_size ${String(size)} does not fit the ${body.length - offset} binary bytes left in the body`,
        );
      }
      data = fromRaw(t.name, t.datatype, body.subarray(offset, offset + size));
      offset += size;
    } else data = jsonData(t.name, t.datatype, t.data, where);
    return { name: t.name, datatype: t.datatype, shape, parameters: p, data };
  });
  const reqParams = params(json.parameters, 'request');
  const outputs = json.outputs === undefined ? [] : json.outputs;
  if (!Array.isArray(outputs) || !outputs.every((o) => isObject(o) && typeof o.name === 'string'))
    throw bad('"outputs" must be an array of { "name": ... }');
  const binary = new Set<string>(reqParams.binary_data_output === true ? ['*'] : []);
  for (const [i, o] of (outputs as Record<string, unknown>[]).entries())
    if (params(o.parameters, `outputs[${i}]`).binary_data === true) binary.add(o.name as string);
  return {
    request: {
      model,
      version,
      id: typeof json.id === 'string' ? json.id : '',
      parameters: reqParams,
      inputs,
      outputs: (outputs as { name: string }[]).map((o) => ({ name: o.name })),
    },
    binary,
  };
}

function jsonOutput(t: OutputTensor): unknown[] {
  if (Array.isArray(t.data)) return t.data.map((e) => Buffer.from(e).toString('utf8'));
  return Array.from(t.data);
}

/** The response: JSON only, or JSON followed by the binary data of the outputs asked for as binary. */
function inferResponseBody(
  r: { model: string; version: number; id: string; outputs: OutputTensor[] },
  binary: ReadonlySet<string>,
): { body: Buffer; headerLength?: number } {
  const parts: Buffer[] = [];
  const outputs = r.outputs.map((t) => {
    const head = { name: t.name, datatype: t.datatype, shape: t.shape };
    if (!binary.has('*') && !binary.has(t.name)) return { ...head, data: jsonOutput(t) };
    const raw = toRaw(t.data);
    parts.push(raw);
    return { ...head, parameters: { binary_data_size: raw.length } };
  });
  const json = Buffer.from(
    JSON.stringify({ model_name: r.model, model_version: String(r.version), ...(r.id ? { id: r.id } : {}), outputs }),
  );
  return parts.length ? { body: Buffer.concat([json, ...parts]), headerLength: json.length } : { body: json };
}

export function oipRoutes(app: FastifyInstance, deps: OipRouteDeps): void {
  const { oip } = deps;
  const versionOf = (req: FastifyRequest) => (req.params as { version?: string }).version ?? '';
  const modelOf = (req: FastifyRequest) => (req.params as { model: string }).model;

  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) =>
    deps.isReady() ? { ready: true } : reply.code(503).send({ ready: false }),
  );
  app.get('/v2', async () => ({ name: 'sightline', version: deps.serverVersion, extensions: ['binary_tensor_data'] }));
  const metadata = async (req: FastifyRequest) => oip.metadata(modelOf(req), versionOf(req));
  app.get('/v2/models/:model', metadata);
  app.get('/v2/models/:model/versions/:version', metadata);
  const ready = async (req: FastifyRequest, reply: FastifyReply) => {
    const ok = deps.isReady() && oip.modelReady(modelOf(req), versionOf(req));
    return reply.code(ok ? 200 : 503).send({ name: modelOf(req), ready: ok });
  };
  app.get('/v2/models/:model/ready', ready);
  app.get('/v2/models/:model/versions/:version/ready', ready);

  const infer = async (req: FastifyRequest, reply: FastifyReply) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const header = req.headers[BINARY_HEADER];
    const { request, binary } = parseInferBody(
      body,
      Array.isArray(header) ? header[0] : header,
      modelOf(req),
      versionOf(req),
    );
    // A canary's split hashes the client's own x-request-id (its retries keep it), else the request's id or first image.
    const r = await oip.infer(request, deps.signalOf(req), clientRequestId(req));
    for (const img of r.images) observeImage(deps.metrics, 'ModelInfer', img, img.timing.totalMs / 1000, 'http');
    const out = inferResponseBody(r, binary);
    if (out.headerLength === undefined) return reply.type('application/json').send(out.body);
    return reply.header(BINARY_HEADER, String(out.headerLength)).type('application/octet-stream').send(out.body);
  };
  // Bodies are read as bytes (JSON, or JSON then binary data) and parsed here, whatever the content type.
  void app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    scope.post('/v2/models/:model/infer', infer);
    scope.post('/v2/models/:model/versions/:version/infer', infer);
  });
}
