/**
 * The HTTP port with Node's own fetch (and node:https for TLS): Open Inference Protocol REST (JSON and
 * the binary tensor data extension), POST /v1/detect (raw body, multipart, annotated image), and the
 * same auth, TLS, admission, deadlines, status mapping and metrics as gRPC. Real servers on loopback.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createToken } from '../support/cli.js';
import { makePki, pem, type TestPki } from '../support/certs.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { parseExposition, pick } from '../observability/support.js';
import { ROUTE_CAPABILITY } from '../../src/transport/http/auth.js';

const haveData = sharedDataOrSkip('http');
const bus = readFileSync(imagePath('bus.jpg'));
const zidane = readFileSync(imagePath('zidane.jpg'));
const model = () => ({ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') });

const lengthPrefixed = (elements: Buffer[]) =>
  Buffer.concat(elements.flatMap((e) => [Buffer.from(Uint32Array.of(e.length).buffer), e]));
const base = (srv: TestServer) => `http://127.0.0.1:${srv.app.http!.port}`;

/** The detections as the JSON answers carry them (JSON numbers of the same float32 values). */
const plain = (
  ds: { classId: number; label: string; confidence: number; xMin: number; yMin: number; xMax: number; yMax: number }[],
) =>
  ds.map((d) => ({
    classId: d.classId,
    label: d.label,
    confidence: d.confidence,
    xMin: d.xMin,
    yMin: d.yMin,
    xMax: d.xMax,
    yMax: d.yMax,
  }));

describe('HTTP port', { skip: !haveData }, () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      models: [model()],
      pool: { workers: 1, warmupRuns: 1 },
      http: { enabled: true, port: 0 },
    });
  });
  after(() => srv?.close());

  test('health, server and model metadata, model readiness (OIP REST)', async () => {
    const get = async (path: string) => {
      const r = await fetch(base(srv) + path);
      return { status: r.status, body: (await r.json()) as any };
    };
    assert.deepEqual(await get('/v2/health/live'), { status: 200, body: { live: true } });
    assert.deepEqual(await get('/v2/health/ready'), { status: 200, body: { ready: true } });
    const meta = await get('/v2');
    assert.equal(meta.body.name, 'sightline');
    assert.deepEqual(meta.body.extensions, ['binary_tensor_data']);
    for (const path of ['/v2/models/yolo11n', '/v2/models/yolo11n/versions/1']) {
      const m = await get(path);
      assert.equal(m.status, 200);
      assert.deepEqual(m.body.versions, ['1']);
      assert.deepEqual(m.body.inputs, [
        { name: 'IMAGE', datatype: 'BYTES', shape: [-1] },
        { name: 'images', datatype: 'FP32', shape: [1, 3, 320, 320] },
      ]);
      assert.deepEqual(
        m.body.outputs.map((o: any) => o.name),
        ['BOXES', 'SCORES', 'CLASSES', 'LABELS', 'COUNTS', 'output0'],
      );
    }
    assert.deepEqual(await get('/v2/models/nope'), { status: 404, body: { error: 'unknown model "nope"' } });
    assert.deepEqual(await get('/v2/models/yolo11n/ready'), { status: 200, body: { name: 'yolo11n', ready: true } });
    assert.deepEqual(await get('/v2/models/yolo11n/versions/3/ready'), {
      status: 503,
      body: { name: 'yolo11n', ready: false },
    });
    assert.equal((await get('/v3/whatever')).status, 404);
  });

  test('POST /v1/detect with the image as the body, or as a multipart file, answers what Detect answers', async () => {
    const want = await srv.detect({ image: bus });
    const raw = await fetch(`${base(srv)}/v1/detect?model=yolo11n`, {
      method: 'POST',
      body: bus,
      headers: { 'content-type': 'image/jpeg', 'x-request-id': 'curl-1' },
    });
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get('x-request-id'), 'curl-1');
    assert.equal(raw.headers.get('x-sightline-detections'), String(want.detections.length));
    const body = (await raw.json()) as any;
    assert.equal(body.model, 'yolo11n');
    assert.equal(body.version, '1');
    assert.equal(body.imageWidth, 810);
    assert.deepEqual(plain(body.detections), plain(want.detections));
    const form = new FormData();
    form.append('image', new Blob([zidane], { type: 'image/jpeg' }), 'zidane.jpg');
    const viaForm = await fetch(`${base(srv)}/v1/detect?confidence_threshold=0.5&classes=0`, {
      method: 'POST',
      body: form,
    });
    assert.equal(viaForm.status, 200);
    const want2 = await srv.detect({ image: zidane, confidenceThreshold: 0.5, classes: [0] });
    assert.ok(want2.detections.length >= 2);
    assert.deepEqual(plain(((await viaForm.json()) as any).detections), plain(want2.detections));
  });

  test('POST /v1/detect?annotate=1 answers the image with the boxes drawn, in the format sent', async () => {
    const jpeg = await fetch(`${base(srv)}/v1/detect?annotate=1`, { method: 'POST', body: bus });
    assert.equal(jpeg.status, 200);
    assert.equal(jpeg.headers.get('content-type'), 'image/jpeg');
    const drawn = Buffer.from(await jpeg.arrayBuffer());
    const meta = await sharp(drawn).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['jpeg', 810, 1080]);
    // The pixels changed where the boxes are: the drawn image differs from the original.
    const [a, b] = await Promise.all([sharp(bus).raw().toBuffer(), sharp(drawn).raw().toBuffer()]);
    let changed = 0;
    for (let i = 0; i < a.length; i += 3) if (Math.abs(a[i]! - b[i]!) > 60) changed++;
    assert.ok(changed > 2000, `${changed} pixels changed by the drawing`);
    const png = await fetch(`${base(srv)}/v1/detect?annotate=1`, {
      method: 'POST',
      body: await sharp(bus).png().toBuffer(),
    });
    assert.equal(png.headers.get('content-type'), 'image/png');
    assert.equal((await sharp(Buffer.from(await png.arrayBuffer())).metadata()).format, 'png');
  });

  test('POST /v2/models/{name}/infer with JSON (IMAGE as base64) answers the padded detection tensors', async () => {
    const [a, b] = await Promise.all([srv.detect({ image: bus }), srv.detect({ image: zidane })]);
    const r = await fetch(`${base(srv)}/v2/models/yolo11n/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        id: 'j1',
        inputs: [
          { name: 'IMAGE', datatype: 'BYTES', shape: [2], data: [bus.toString('base64'), zidane.toString('base64')] },
        ],
      }),
    });
    assert.equal(r.status, 200);
    const body = (await r.json()) as any;
    assert.equal(body.id, 'j1');
    assert.equal(body.model_version, '1');
    const out = Object.fromEntries(body.outputs.map((o: any) => [o.name, o]));
    const k = Math.max(a.detections.length, b.detections.length);
    assert.deepEqual(out.COUNTS.data, [a.detections.length, b.detections.length]);
    assert.deepEqual(out.BOXES.shape, [2, k, 4]);
    assert.deepEqual(
      out.LABELS.data.slice(0, a.detections.length),
      a.detections.map((d) => d.label),
    );
    assert.deepEqual(
      out.SCORES.data.slice(k, k + b.detections.length),
      b.detections.map((d) => d.confidence),
    );
    assert.deepEqual(out.BOXES.data.slice(0, 4), [
      a.detections[0]!.xMin,
      a.detections[0]!.yMin,
      a.detections[0]!.xMax,
      a.detections[0]!.yMax,
    ]);
  });

  test('the binary tensor data extension: length-prefixed BYTES in, binary outputs back', async () => {
    const want = await srv.detect({ image: zidane });
    const binary = lengthPrefixed([zidane]);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [{ name: 'IMAGE', datatype: 'BYTES', shape: [1], parameters: { binary_data_size: binary.length } }],
        outputs: [{ name: 'SCORES', parameters: { binary_data: true } }, { name: 'LABELS' }],
      }),
    );
    const r = await fetch(`${base(srv)}/v2/models/yolo11n/versions/1/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
      body: Buffer.concat([header, binary]),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'application/octet-stream');
    const all = Buffer.from(await r.arrayBuffer());
    const jsonLength = Number(r.headers.get('inference-header-content-length'));
    const head = JSON.parse(all.subarray(0, jsonLength).toString()) as any;
    const [scores, labels] = head.outputs;
    assert.equal(scores.parameters.binary_data_size, want.detections.length * 4);
    assert.equal(scores.data, undefined);
    const values = new Float32Array(
      all.buffer.slice(all.byteOffset + jsonLength, all.byteOffset + jsonLength + scores.parameters.binary_data_size),
    );
    assert.deepEqual(
      Array.from(values),
      want.detections.map((d) => Math.fround(d.confidence)),
    );
    assert.deepEqual(
      labels.data,
      want.detections.map((d) => d.label),
      'outputs not asked for as binary stay JSON',
    );
    // The model's own tensor as binary FP32, every output binary.
    const tensor = Buffer.alloc(3 * 320 * 320 * 4);
    const h2 = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'images',
            datatype: 'FP32',
            shape: [1, 3, 320, 320],
            parameters: { binary_data_size: tensor.length },
          },
        ],
        parameters: { binary_data_output: true },
      }),
    );
    const t = await fetch(`${base(srv)}/v2/models/yolo11n/infer`, {
      method: 'POST',
      headers: { 'inference-header-content-length': String(h2.length) },
      body: Buffer.concat([h2, tensor]),
    });
    assert.equal(t.status, 200);
    const tb = Buffer.from(await t.arrayBuffer());
    const th = JSON.parse(tb.subarray(0, Number(t.headers.get('inference-header-content-length'))).toString()) as any;
    assert.deepEqual(
      th.outputs.map((o: any) => [o.name, o.datatype, o.shape, o.parameters.binary_data_size]),
      [['output0', 'FP32', [1, 84, 2100], 84 * 2100 * 4]],
    );
    assert.equal(tb.length, Number(t.headers.get('inference-header-content-length')) + 84 * 2100 * 4);
  });

  test('bad requests: 400 with a message, 404 for unknown models', async () => {
    const post = async (path: string, body: string | Buffer | FormData, headers: Record<string, string> = {}) => {
      const r = await fetch(base(srv) + path, { method: 'POST', body, headers });
      return { status: r.status, error: ((await r.json()) as any).error as string };
    };
    assert.deepEqual(await post('/v1/detect', 'not an image'), {
      status: 400,
      error: 'unrecognised image format; accepted formats: jpeg, png, webp, gif, tiff, avif',
    });
    assert.match(
      (await post('/v1/detect?confidence_threshold=7', bus)).error,
      /confidence_threshold must be in \(0, 1\]/,
    );
    assert.equal((await post('/v1/detect?model=nope', bus)).status, 404);
    assert.equal(
      (
        await post(
          '/v2/models/nope/infer',
          JSON.stringify({
            inputs: [{ name: 'IMAGE', datatype: 'BYTES', shape: [1], data: [bus.toString('base64')] }],
          }),
        )
      ).status,
      404,
    );
    const cases: [string, RegExp][] = [
      ['{"inputs": 3}', /"inputs" must be an array/],
      ['{not json', /not JSON/],
      ['{"inputs":[{"name":"IMAGE","datatype":"BYTES","shape":[1],"data":["%%%"]}]}', /base64/],
      [
        '{"inputs":[{"name":"IMAGE","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":99}}]}',
        /binary_data_size 99 does not fit/,
      ],
    ];
    for (const [body, message] of cases) {
      const r = await post(
        '/v2/models/yolo11n/infer',
        body,
        body.includes('binary_data_size') ? { 'inference-header-content-length': String(body.length) } : {},
      );
      assert.equal(r.status, 400, body);
      assert.match(r.error, message);
    }
    const multipart = new FormData();
    multipart.append('note', 'no file here');
    assert.match((await post('/v1/detect', multipart)).error, /holds no file/);
  });

  test('a full server answers 429 with Retry-After before reading the body', async () => {
    const tickets = Array.from({ length: srv.app.config.pool.workers + srv.app.config.pool.maxQueue }, () =>
      srv.app.pool.admit(),
    );
    try {
      const r = await fetch(`${base(srv)}/v1/detect`, { method: 'POST', body: bus });
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.ok(Number(r.headers.get('retry-after-ms')) > 0);
      assert.match(((await r.json()) as any).error, /at capacity/);
    } finally {
      for (const t of tickets) t.release();
    }
  });

  test('http.server.request.duration per route and status, and the images counted under rpc_system http', async () => {
    await fetch(`${base(srv)}/v1/detect`, { method: 'POST', body: bus });
    const e = parseExposition(await srv.app.metrics.scrape());
    const ok = pick(e, 'http_server_request_duration_seconds_count', {
      http_request_method: 'POST',
      http_route: '/v1/detect',
      http_response_status_code: '200',
      url_scheme: 'http',
    });
    assert.ok(ok.length === 1 && ok[0]!.value >= 1);
    assert.ok(
      pick(e, 'http_server_request_duration_seconds_count', {
        http_route: '/v1/detect',
        http_response_status_code: '429',
      }).length === 1,
    );
    const routes = new Set(Object.keys(ROUTE_CAPABILITY).map((k) => k.split(' ')[1]));
    const labelled: (string | undefined)[] = pick(e, 'http_server_request_duration_seconds_count').map(
      (s) => s.labels.http_route,
    );
    assert.ok(labelled.includes(undefined), 'the 404 of an unmatched path is counted without a route');
    assert.deepEqual(
      labelled.filter((r) => r !== undefined && !routes.has(r)),
      [],
      'only route templates become labels, never raw paths',
    );
    assert.ok(pick(e, 'sightline_images_total', { rpc_method: 'Detect', sightline_model: 'yolo11n' }).length >= 1);
    assert.ok(
      pick(e, 'sightline_request_duration_seconds_count', {
        rpc_system: 'http',
        rpc_method: 'ModelInfer',
        rpc_service: 'inference.GRPCInferenceService',
      })[0]!.value >= 1,
    );
  });
});

describe('HTTP port limits and deadlines', { skip: !haveData }, () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({
      models: [model()],
      pool: { workers: 1, warmupRuns: 0 },
      http: { enabled: true, port: 0, maxBodyBytes: 256 * 1024, requestTimeoutMs: 40 },
    });
  });
  after(() => srv?.close());

  test('a body over http.maxBodyBytes is refused with 413; a request past http.requestTimeoutMs gets 504', async () => {
    const big = await fetch(`${base(srv)}/v1/detect`, { method: 'POST', body: bus });
    assert.equal(big.status, 413);
    const small = await sharp(bus).resize(200).jpeg().toBuffer();
    const slow = await fetch(`${base(srv)}/v2/models/yolo11n/infer`, {
      method: 'POST',
      body: JSON.stringify({
        inputs: [{ name: 'IMAGE', datatype: 'BYTES', shape: [8], data: Array(8).fill(small.toString('base64')) }],
      }),
    });
    assert.equal(slow.status, 504);
    assert.match(((await slow.json()) as any).error, /http\.requestTimeoutMs/);
  });
});

describe('HTTP port with TLS and tokens', { skip: !haveData }, () => {
  let srv: TestServer;
  let pki: TestPki;
  const tokens: Record<string, string> = {};
  before(async () => {
    pki = makePki('http');
    // No model: a request that passes auth gets 503 (not ready), which also proves the mapping.
    srv = await startTestServer({
      tls: { enabled: true, certFile: pki.serverCert, keyFile: pki.serverKey },
      auth: { enabled: true, maxFailuresPerMinute: 1000 },
      http: { enabled: true, port: 0 },
      pool: { workers: 1 },
    });
    for (const role of ['viewer', 'inferencer']) {
      tokens[role] = await createToken(srv.dataDir, `h-${role}`, role);
    }
  });
  after(() => srv?.close());

  const call = (method: string, path: string, token?: string, body?: Buffer) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: srv.app.http!.port,
          method,
          path,
          ca: pem(pki.caCert),
          headers: token ? { authorization: `Bearer ${token}` } : {},
        },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode!, body: text, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });

  test('over TLS with the server certificate: probes need no token, the rest 401 / 403 by role', async () => {
    assert.equal((await call('GET', '/v2/health/live')).status, 200);
    const notReady = await call('GET', '/v2/health/ready');
    assert.deepEqual([notReady.status, JSON.parse(notReady.body)], [503, { ready: false }]);
    const anonymous = await call('POST', '/v1/detect', undefined, bus);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers['www-authenticate'], 'Bearer');
    assert.equal(
      (await call('POST', '/v1/detect', 'sl_0000000000000000_notarealsecretnotarealsecretnotarealsecr', bus)).status,
      401,
    );
    const viewer = await call('POST', '/v1/detect', tokens.viewer, bus);
    assert.equal(viewer.status, 403);
    assert.match(JSON.parse(viewer.body).error, /role viewer may not call detect \(it needs infer\)/);
    assert.equal((await call('GET', '/v2', tokens.viewer)).status, 200);
    const inferencer = await call('POST', '/v1/detect', tokens.inferencer, bus);
    assert.equal(inferencer.status, 503, 'past auth; no model is loaded yet');
    assert.match(JSON.parse(inferencer.body).error, /no model is loaded yet/);
    await assert.rejects(
      fetch(`http://127.0.0.1:${srv.app.http!.port}/v2/health/live`),
      'plain HTTP is not served when TLS is on',
    );
  });
});
