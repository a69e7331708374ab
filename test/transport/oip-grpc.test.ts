/**
 * The Open Inference Protocol over gRPC, called by a client that shares no code with Sightline: a
 * dynamic @grpc/proto-loader client over proto/inference/open_inference_grpc.proto (the same way
 * Triton's and KServe's clients are generated from the specification's file), plus a hand-encoded
 * request that pins the specification's field numbers. Real server, real models, loopback.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import ort from 'onnxruntime-node';
import protobuf from 'protobufjs';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { TensorService } from '../../src/serving/index.js';
import { ModelRepository } from '../../src/transport/oip/index.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { cocoLabelsFile, imagePath, modelPath, repoRoot } from '../support/shared.js';
import { parseExposition, pick } from '../observability/support.js';

const haveData = sharedDataOrSkip('oip grpc');
const PROTO = join(repoRoot, 'proto', 'inference', 'open_inference_grpc.proto');

type Unary = (
  req: object,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (e: grpc.ServiceError | null, r: any) => void,
) => void;
type OipClient = grpc.Client & Record<string, Unary>;

function oipClient(address: string): OipClient {
  const def = protoLoader.loadSync(PROTO, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  return new pkg.inference.GRPCInferenceService(address, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 64 << 20,
    'grpc.max_send_message_length': 64 << 20,
  }) as OipClient;
}

interface Outcome {
  res?: any;
  err?: grpc.ServiceError;
}

function callOip(
  c: OipClient,
  method: string,
  req: object,
  opts: { md?: grpc.Metadata; deadlineMs?: number } = {},
): Promise<Outcome> {
  return new Promise((resolve) =>
    c[method]!.call(
      c,
      req,
      opts.md ?? new grpc.Metadata(),
      { deadline: Date.now() + (opts.deadlineMs ?? 60_000) },
      (err, res) => resolve(err ? { err } : { res }),
    ),
  );
}

async function ok(c: OipClient, method: string, req: object): Promise<any> {
  const r = await callOip(c, method, req);
  assert.ifError(r.err);
  return r.res;
}

/** BYTES elements as Triton's clients send them in raw contents: a 4-byte little-endian length before each. */
function lengthPrefixed(elements: Buffer[]): Buffer {
  return Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(e.length).buffer), e]));
}

/** Reads an output tensor from raw_output_contents. */
function rawOutput(
  res: any,
  name: string,
): { shape: number[]; datatype: string; fp32?: Float32Array; int32?: Int32Array; bytes?: string[] } {
  const i = res.outputs.findIndex((o: any) => o.name === name);
  assert.ok(i >= 0, `output ${name} in the answer`);
  const o = res.outputs[i];
  const raw: Buffer = res.raw_output_contents[i];
  const shape = o.shape.map(Number);
  if (o.datatype === 'FP32')
    return {
      shape,
      datatype: o.datatype,
      fp32: new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
    };
  if (o.datatype === 'INT32')
    return {
      shape,
      datatype: o.datatype,
      int32: new Int32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
    };
  const bytes: string[] = [];
  for (let p = 0; p < raw.length;) {
    const n = raw.readUInt32LE(p);
    bytes.push(raw.subarray(p + 4, p + 4 + n).toString('utf8'));
    p += 4 + n;
  }
  return { shape, datatype: o.datatype, bytes };
}

/** The detections of image i, read back from the padded tensors. */
function detectionsOf(res: any, i: number) {
  const boxes = rawOutput(res, 'BOXES');
  const scores = rawOutput(res, 'SCORES').fp32!;
  const classes = rawOutput(res, 'CLASSES').int32!;
  const labels = rawOutput(res, 'LABELS').bytes!;
  const counts = rawOutput(res, 'COUNTS').int32!;
  const k = boxes.shape[1]!;
  return Array.from({ length: counts[i]! }, (_, j) => {
    const at = i * k + j;
    return {
      classId: classes[at],
      label: labels[at],
      confidence: scores[at],
      box: Array.from(boxes.fp32!.subarray(at * 4, at * 4 + 4)),
    };
  });
}

const f32 = (x: number) => Math.fround(x);
const asExpected = (d: {
  classId: number;
  label: string;
  confidence: number;
  xMin: number;
  yMin: number;
  xMax: number;
  yMax: number;
}) => ({
  classId: d.classId,
  label: d.label,
  confidence: f32(d.confidence),
  box: [d.xMin, d.yMin, d.xMax, d.yMax].map(f32),
});

const imageInput = (shape: number[], contents?: object) => ({
  name: 'IMAGE',
  datatype: 'BYTES',
  shape,
  ...(contents ? { contents } : {}),
});

describe('Open Inference Protocol over gRPC', { skip: !haveData }, () => {
  let srv: TestServer;
  let c: OipClient;
  const spans = new InMemorySpanExporter();
  const bus = readFileSync(imagePath('bus.jpg'));
  const zidane = readFileSync(imagePath('zidane.jpg'));
  before(async () => {
    srv = await startTestServer(
      { models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }], pool: { workers: 1, warmupRuns: 1 } },
      { spanExporter: spans },
    );
    c = oipClient(srv.address);
  });
  after(async () => {
    c?.close();
    await srv?.close();
  });

  test('health and metadata: live, ready, server metadata, both signatures of the model', async () => {
    assert.equal((await ok(c, 'ServerLive', {})).live, true);
    assert.equal((await ok(c, 'ServerReady', {})).ready, true);
    assert.equal((await ok(c, 'ModelReady', { name: 'yolo11n' })).ready, true);
    assert.equal((await ok(c, 'ModelReady', { name: 'yolo11n', version: '1' })).ready, true);
    assert.equal((await ok(c, 'ModelReady', { name: 'yolo11n', version: '7' })).ready, false);
    assert.equal((await ok(c, 'ModelReady', { name: 'nope' })).ready, false);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    assert.deepEqual(await ok(c, 'ServerMetadata', {}), {
      name: 'sightline',
      version: pkg.version,
      extensions: ['model_repository'],
    });
    const m = await ok(c, 'ModelMetadata', { name: 'yolo11n' });
    assert.equal(m.name, 'yolo11n');
    assert.deepEqual(m.versions, ['1']);
    assert.equal(m.platform, 'onnxruntime_onnx');
    assert.deepEqual(
      m.inputs.map((t: any) => [t.name, t.datatype, t.shape.map(Number)]),
      [
        ['IMAGE', 'BYTES', [-1]],
        ['images', 'FP32', [1, 3, 320, 320]],
      ],
    );
    assert.deepEqual(
      m.outputs.map((t: any) => [t.name, t.datatype, t.shape.map(Number)]),
      [
        ['BOXES', 'FP32', [-1, -1, 4]],
        ['SCORES', 'FP32', [-1, -1]],
        ['CLASSES', 'INT32', [-1, -1]],
        ['LABELS', 'BYTES', [-1, -1]],
        ['COUNTS', 'INT32', [-1]],
        ['output0', 'FP32', [1, 84, 2100]],
      ],
    );
    const missing = await callOip(c, 'ModelMetadata', { name: 'nope' });
    assert.equal(missing.err?.code, grpc.status.NOT_FOUND);
    assert.match(missing.err!.details, /unknown model "nope"/);
  });

  test('ModelInfer with BYTES images in typed contents answers what Detect answers, per image, padded', async () => {
    const [a, b] = await Promise.all([srv.detect({ image: bus }), srv.detect({ image: zidane })]);
    const res = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      id: 'req-1',
      inputs: [imageInput([2], { bytes_contents: [bus, zidane] })],
    });
    assert.equal(res.model_name, 'yolo11n');
    assert.equal(res.model_version, '1');
    assert.equal(res.id, 'req-1');
    assert.deepEqual(
      res.outputs.map((o: any) => o.name),
      ['BOXES', 'SCORES', 'CLASSES', 'LABELS', 'COUNTS'],
    );
    const k = Math.max(a.detections.length, b.detections.length);
    assert.deepEqual(rawOutput(res, 'BOXES').shape, [2, k, 4]);
    assert.deepEqual(rawOutput(res, 'SCORES').shape, [2, k]);
    assert.deepEqual(rawOutput(res, 'COUNTS').int32, Int32Array.of(a.detections.length, b.detections.length));
    assert.ok(
      a.detections.length > 0 && b.detections.length > 0 && a.detections.length !== b.detections.length,
      'the two images have different counts, so one is padded',
    );
    assert.deepEqual(detectionsOf(res, 0), a.detections.map(asExpected));
    assert.deepEqual(detectionsOf(res, 1), b.detections.map(asExpected));
    // Padding rows of the shorter image are zero, with empty labels.
    const short = a.detections.length < b.detections.length ? 0 : 1;
    const n = Math.min(a.detections.length, b.detections.length);
    assert.equal(rawOutput(res, 'SCORES').fp32![short * k + n], 0);
    assert.equal(rawOutput(res, 'LABELS').bytes![short * k + n], '');
    assert.ok(a.detections.some((d) => d.label === 'bus'));
  });

  test('ModelInfer with BYTES images in raw contents (4-byte little-endian length prefixes) answers the same', async () => {
    const typed = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [imageInput([2], { bytes_contents: [zidane, bus] })],
    });
    const raw = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [imageInput([2])],
      raw_input_contents: [lengthPrefixed([zidane, bus])],
    });
    assert.deepEqual(detectionsOf(raw, 0), detectionsOf(typed, 0));
    assert.deepEqual(detectionsOf(raw, 1), detectionsOf(typed, 1));
    const one = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [imageInput([1])],
      raw_input_contents: [lengthPrefixed([bus])],
    });
    assert.deepEqual(detectionsOf(one, 0), detectionsOf(typed, 1));
  });

  test('thresholds and class filters as request parameters; requested outputs only, in the order asked', async () => {
    const want = await srv.detect({ image: bus, confidenceThreshold: 0.5, classes: [0], maxDetections: 3 });
    const res = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      parameters: {
        confidence_threshold: { double_param: 0.5 },
        classes: { string_param: '0' },
        max_detections: { int64_param: '3' },
      },
      inputs: [imageInput([1], { bytes_contents: [bus] })],
      outputs: [{ name: 'COUNTS' }, { name: 'LABELS' }],
    });
    assert.deepEqual(
      res.outputs.map((o: any) => o.name),
      ['COUNTS', 'LABELS'],
    );
    assert.equal(rawOutput(res, 'COUNTS').int32![0], want.detections.length);
    assert.ok(want.detections.length > 0 && want.detections.length <= 3);
    assert.deepEqual(
      rawOutput(res, 'LABELS').bytes,
      want.detections.map(() => 'person'),
    );
    const bad = await callOip(c, 'ModelInfer', {
      model_name: 'yolo11n',
      parameters: { confidence_threshold: { double_param: 2 } },
      inputs: [imageInput([1], { bytes_contents: [bus] })],
    });
    assert.equal(bad.err?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad.err!.details, /confidence_threshold must be in \(0, 1\]/);
  });

  test("ModelInfer with the model's own FP32 tensor answers its raw outputs, as ONNX Runtime computes them", async () => {
    const dims = [1, 3, 320, 320];
    const input = Float32Array.from({ length: 3 * 320 * 320 }, (_, i) => ((i * 7919) % 256) / 255);
    const session = await ort.InferenceSession.create(modelPath('yolo11n_int8_320.onnx'), {
      intraOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    });
    const expected = (await session.run({ images: new ort.Tensor('float32', input, dims) })).output0!
      .data as Float32Array;
    await session.release();
    const raw = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [{ name: 'images', datatype: 'FP32', shape: dims }],
      raw_input_contents: [Buffer.from(input.buffer)],
    });
    const typed = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [{ name: 'images', datatype: 'FP32', shape: dims, contents: { fp32_contents: Array.from(input) } }],
    });
    for (const res of [raw, typed]) {
      assert.deepEqual(
        res.outputs.map((o: any) => o.name),
        ['output0'],
      );
      const out = rawOutput(res, 'output0');
      assert.deepEqual(out.shape, [1, 84, 2100]);
      assert.equal(out.fp32!.length, expected.length);
      let worst = 0;
      for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(out.fp32![i]! - expected[i]!));
      assert.ok(worst < 1e-4, `largest difference from ONNX Runtime run directly: ${worst}`);
    }
  });

  test('bad requests get INVALID_ARGUMENT or NOT_FOUND with a message saying what is wrong', async () => {
    const cases: [object, grpc.status, RegExp][] = [
      [
        {
          model_name: 'yolo11n',
          inputs: [{ name: 'images', datatype: 'FP32', shape: [1, 3, 640, 640] }],
          raw_input_contents: [Buffer.alloc(3 * 640 * 640 * 4)],
        },
        grpc.status.INVALID_ARGUMENT,
        /has shape \[1, 3, 320, 320\]; got \[1, 3, 640, 640\]/,
      ],
      [
        {
          model_name: 'yolo11n',
          inputs: [{ name: 'images', datatype: 'INT32', shape: [1] }],
          raw_input_contents: [Buffer.alloc(4)],
        },
        grpc.status.INVALID_ARGUMENT,
        /datatype INT32 is not accepted/,
      ],
      [
        { model_name: 'yolo11n', inputs: [imageInput([1])], raw_input_contents: [Buffer.from([200, 0, 0, 0, 1, 2])] },
        grpc.status.INVALID_ARGUMENT,
        /runs past the end/,
      ],
      [
        { model_name: 'yolo11n', inputs: [imageInput([2])], raw_input_contents: [lengthPrefixed([bus])] },
        grpc.status.INVALID_ARGUMENT,
        /shape \[2\] holds 2 element\(s\), but the contents hold 1/,
      ],
      [
        {
          model_name: 'yolo11n',
          inputs: [imageInput([1], { bytes_contents: [bus] })],
          raw_input_contents: [lengthPrefixed([bus])],
        },
        grpc.status.INVALID_ARGUMENT,
        /no input may also carry typed contents/,
      ],
      [
        { model_name: 'yolo11n', inputs: [imageInput([1], { bytes_contents: [Buffer.from('not an image')] })] },
        grpc.status.INVALID_ARGUMENT,
        /image/,
      ],
      [
        { model_name: 'yolo11n', inputs: [imageInput([1], { bytes_contents: [bus] })], outputs: [{ name: 'MASKS' }] },
        grpc.status.INVALID_ARGUMENT,
        /no output MASKS.*BOXES, SCORES/,
      ],
      [
        {
          model_name: 'yolo11n',
          inputs: [{ name: 'pixels', datatype: 'FP32', shape: [1] }],
          raw_input_contents: [Buffer.alloc(4)],
        },
        grpc.status.INVALID_ARGUMENT,
        /send IMAGE .* or images \(FP32 \[1, 3, 320, 320\]\)/,
      ],
      [
        { model_name: 'nope', inputs: [imageInput([1], { bytes_contents: [bus] })] },
        grpc.status.NOT_FOUND,
        /unknown model "nope"/,
      ],
      [
        { model_name: 'yolo11n', model_version: '9', inputs: [imageInput([1], { bytes_contents: [bus] })] },
        grpc.status.NOT_FOUND,
        /no version 9\b/,
      ],
    ];
    for (const [req, code, message] of cases) {
      const r = await callOip(c, 'ModelInfer', req);
      assert.equal(r.err?.code, code, `${JSON.stringify(req).slice(0, 160)}: ${r.err?.details}`);
      assert.match(r.err!.details, message);
    }
  });

  test('a full server refuses ModelInfer before reading it: RESOURCE_EXHAUSTED with a retry-after-ms trailer', async () => {
    // Take every place in the admission budget (workers + maxQueue), as that many requests in flight would.
    const tickets = Array.from({ length: srv.app.config.pool.workers + srv.app.config.pool.maxQueue }, () =>
      srv.app.pool.admit(),
    );
    try {
      const r = await callOip(c, 'ModelInfer', {
        model_name: 'yolo11n',
        inputs: [imageInput([1], { bytes_contents: [bus] })],
      });
      assert.equal(r.err?.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.ok(Number(r.err!.metadata.get('retry-after-ms')[0]) > 0, 'a retry-after-ms trailer');
    } finally {
      for (const t of tickets) t.release();
    }
    assert.ok(
      (await ok(c, 'ModelInfer', { model_name: 'yolo11n', inputs: [imageInput([1], { bytes_contents: [bus] })] }))
        .outputs.length,
    );
  });

  test('a deadline that passes while images wait ends the call with DEADLINE_EXCEEDED', async () => {
    const r = await callOip(
      c,
      'ModelInfer',
      { model_name: 'yolo11n', inputs: [imageInput([8], { bytes_contents: Array(8).fill(bus) })] },
      { deadlineMs: 30 },
    );
    assert.equal(r.err?.code, grpc.status.DEADLINE_EXCEEDED);
  });

  test('metrics and spans: rpc.* with rpc.service inference.GRPCInferenceService and rpc.method ModelInfer', async () => {
    await ok(c, 'ModelInfer', { model_name: 'yolo11n', inputs: [imageInput([1], { bytes_contents: [bus] })] });
    const e = parseExposition(await srv.app.metrics.scrape());
    const calls = pick(e, 'rpc_server_call_duration_seconds_count', {
      rpc_service: 'inference.GRPCInferenceService',
      rpc_method: 'ModelInfer',
      rpc_grpc_status_code: '0',
      sightline_model: 'yolo11n',
    });
    assert.ok(calls.length === 1 && calls[0]!.value >= 1, 'ModelInfer calls are counted');
    assert.ok(
      pick(e, 'rpc_server_call_duration_seconds_count', { rpc_method: 'ModelInfer', rpc_grpc_status_code: '8' })
        .length === 1,
      'the early refusal is counted',
    );
    assert.ok(
      pick(e, 'sightline_images_total', { rpc_method: 'ModelInfer', sightline_model: 'yolo11n' })[0]!.value >= 1,
      'its images are counted',
    );
    await srv.app.tracing.forceFlush();
    const span = spans.getFinishedSpans().find((s) => s.name === 'inference.GRPCInferenceService/ModelInfer');
    assert.ok(span, 'a SERVER span per ModelInfer call');
    assert.equal(span.attributes['rpc.service'], 'inference.GRPCInferenceService');
    assert.equal(span.attributes['rpc.method'], 'ModelInfer');
    assert.equal(span.attributes['sightline.model'], 'yolo11n');
  });

  test('a hand-encoded request with the specification field numbers is understood (wire compatibility)', async () => {
    // ModelInferRequest: model_name = 1, inputs = 5 (InferInputTensor: name = 1, datatype = 2, shape = 3
    // packed int64, contents = 5), raw_input_contents = 7. Encoded here without any proto file.
    const varint = (n: number) => {
      const out: number[] = [];
      for (; n > 127; n = Math.floor(n / 128)) out.push((n % 128) | 128);
      return Buffer.from([...out, n]);
    };
    const field = (no: number, body: Buffer) => Buffer.concat([varint((no << 3) | 2), varint(body.length), body]);
    const tensor = Buffer.concat([field(1, Buffer.from('IMAGE')), field(2, Buffer.from('BYTES')), field(3, varint(1))]);
    const req = Buffer.concat([field(1, Buffer.from('yolo11n')), field(5, tensor), field(7, lengthPrefixed([bus]))]);
    const raw = new grpc.Client(srv.address, grpc.credentials.createInsecure());
    const res = await new Promise<Buffer>((resolve, reject) =>
      raw.makeUnaryRequest(
        '/inference.GRPCInferenceService/ModelInfer',
        (b: Buffer) => b,
        (b: Buffer) => b,
        req,
        (e, r) => (e ? reject(e) : resolve(r!)),
      ),
    );
    raw.close();
    // The answer, decoded by protobufjs from the proto file: model_name = 1, outputs = 5, raw_output_contents = 6.
    const decoded = protobuf
      .loadSync(PROTO)
      .lookupType('inference.ModelInferResponse')
      .toObject(protobuf.loadSync(PROTO).lookupType('inference.ModelInferResponse').decode(res), {
        longs: String,
        defaults: true,
      }) as any;
    assert.equal(decoded.modelName, 'yolo11n');
    assert.deepEqual(
      decoded.outputs.map((o: any) => o.name),
      ['BOXES', 'SCORES', 'CLASSES', 'LABELS', 'COUNTS'],
    );
    assert.equal(decoded.rawOutputContents.length, 5);
    assert.ok(Buffer.from(decoded.rawOutputContents[3]).includes(Buffer.from('bus')), 'LABELS name the bus');
  });

  test('repository extension: index, load (promote) and unload (roll back) on the registry', async () => {
    await srv.app.registry!.registerFile('yolo11n', modelPath('yolox_nano.onnx'), { labelsPath: cocoLabelsFile });
    const index = (await ok(c, 'RepositoryIndex', {})).models;
    assert.deepEqual(
      index.map((m: any) => [m.name, m.version, m.state, m.reason]),
      [
        ['yolo11n', '1', 'READY', 'active'],
        ['yolo11n', '2', 'UNAVAILABLE', 'not loaded'],
      ],
    );
    assert.deepEqual(
      (await ok(c, 'RepositoryIndex', { ready: true })).models.map((m: any) => m.version),
      ['1'],
    );
    await ok(c, 'RepositoryModelLoad', { model_name: 'yolo11n', parameters: { version: { string_param: '2' } } });
    const res = await ok(c, 'ModelInfer', {
      model_name: 'yolo11n',
      inputs: [imageInput([1], { bytes_contents: [bus] })],
    });
    assert.equal(res.model_version, '2', 'the loaded version serves');
    assert.equal(srv.app.registry!.status('yolo11n').activeVersion, 2);
    await ok(c, 'RepositoryModelUnload', { model_name: 'yolo11n' });
    assert.equal(srv.app.registry!.status('yolo11n').activeVersion, 1, 'unload rolled back to version 1');
    assert.equal(
      (await ok(c, 'ModelInfer', { model_name: 'yolo11n', inputs: [imageInput([1], { bytes_contents: [bus] })] }))
        .model_version,
      '1',
    );
    const unknown = await callOip(c, 'RepositoryModelLoad', { model_name: 'nope' });
    assert.equal(unknown.err?.code, grpc.status.NOT_FOUND);
  });

  test('on an inference replica (no registry here) load and unload say where to go instead', async () => {
    const repo = new ModelRepository(null, new TensorService(srv.app.models!, srv.app.pool));
    // What this process has loaded: version 1 active, version 2 kept warm as the rollback target.
    assert.deepEqual(
      repo.index(true).map((e) => [e.name, e.version, e.state, e.reason]),
      [
        ['yolo11n', '1', 'READY', 'active'],
        ['yolo11n', '2', 'READY', 'loaded'],
      ],
    );
    await assert.rejects(
      repo.load('yolo11n', {}, { actor: 'someone', peer: '' }),
      (e: Error & { code?: string }) =>
        e.code === 'PRECONDITION' && /inference replica.*sightline registry promote/.test(e.message),
    );
    await assert.rejects(
      repo.unload('yolo11n', { actor: 'someone', peer: '' }),
      (e: Error & { code?: string }) => e.code === 'PRECONDITION',
    );
  });
});
