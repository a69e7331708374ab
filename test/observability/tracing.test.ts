/** Traces: a SERVER span per call continuing the caller's W3C trace, with one child span per stage. */
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Tracing } from '../../src/telemetry/tracing.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { openStream } from '../support/stream.js';
import { detectCall } from './support.js';

const haveData = sharedDataOrSkip('observability tracing');

const STAGES = ['decode', 'preprocess', 'queue', 'inference', 'postprocess'];
const hrMs = (t: [number, number]): number => t[0] * 1e3 + t[1] / 1e6;

describe('tracing', { skip: !haveData }, () => {
  let srv: TestServer;
  let bus: Buffer;
  const exporter = new InMemorySpanExporter();
  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer(
      { models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }], pool: { workers: 1, warmupRuns: 1 } },
      { spanExporter: exporter },
    );
  });
  after(() => srv?.close());

  const serverSpans = (method: string): ReadableSpan[] =>
    exporter.getFinishedSpans().filter((s) => s.name === `sightline.v1.Detector/${method}`);

  test("a Detect with traceparent continues the caller's trace, with a child span per stage", async () => {
    exporter.reset();
    const traceId = randomBytes(16).toString('hex');
    const parentId = randomBytes(8).toString('hex');
    const r = await detectCall(
      srv.client,
      { image: bus },
      { traceparent: `00-${traceId}-${parentId}-01`, tracestate: 'vendor=abc' },
    );
    assert.ok(r.response);
    const [span, ...others] = serverSpans('Detect');
    assert.ok(span, 'a server span');
    assert.equal(others.length, 0);
    assert.equal(span.kind, SpanKind.SERVER);
    assert.equal(span.spanContext().traceId, traceId);
    assert.equal(span.parentSpanContext?.spanId, parentId);
    assert.equal(span.parentSpanContext?.isRemote, true);
    assert.equal(span.spanContext().traceState?.get('vendor'), 'abc');
    assert.equal(span.attributes['rpc.system'], 'grpc');
    assert.equal(span.attributes['rpc.service'], 'sightline.v1.Detector');
    assert.equal(span.attributes['rpc.method'], 'Detect');
    assert.equal(span.attributes['rpc.grpc.status_code'], 0);
    assert.equal(span.attributes['sightline.model'], 'yolo11n');
    assert.equal(span.attributes['sightline.model.version'], '1');
    assert.equal(span.attributes['sightline.detections'], r.response.detections.length);
    assert.equal(span.attributes['sightline.request_id'], r.headers.get('x-request-id')[0]);
    assert.equal(span.status.code, SpanStatusCode.UNSET);

    const children = exporter
      .getFinishedSpans()
      .filter((s) => s.parentSpanContext?.spanId === span.spanContext().spanId);
    assert.deepEqual(children.map((c) => c.name).sort(), [...STAGES].sort());
    let prevEnd = -Infinity;
    for (const stage of STAGES) {
      const c = children.find((x) => x.name === stage)!;
      assert.equal(c.spanContext().traceId, traceId);
      assert.equal(c.attributes['sightline.stage'], stage);
      assert.ok(hrMs(c.startTime) >= hrMs(span.startTime) - 0.001, `${stage} starts inside the request`);
      assert.ok(hrMs(c.endTime) <= hrMs(span.endTime) + 1, `${stage} ends inside the request`);
      assert.ok(hrMs(c.startTime) >= prevEnd - 0.001, `${stage} follows the previous stage`);
      prevEnd = hrMs(c.endTime);
    }
    assert.ok(
      hrMs(children.find((x) => x.name === 'inference')!.endTime) >
        hrMs(children.find((x) => x.name === 'inference')!.startTime),
    );
  });

  test('without traceparent a call starts a new trace; failures carry their status code', async () => {
    exporter.reset();
    const r = await detectCall(srv.client, { image: Buffer.alloc(0) });
    assert.equal(r.error?.code, status.INVALID_ARGUMENT);
    const [span] = serverSpans('Detect');
    assert.ok(span);
    assert.equal(span.parentSpanContext, undefined);
    assert.match(span.spanContext().traceId, /^[0-9a-f]{32}$/);
    assert.equal(span.attributes['rpc.grpc.status_code'], status.INVALID_ARGUMENT);
    assert.equal(span.status.code, SpanStatusCode.UNSET, 'a client error is not a server span error');
    assert.equal(exporter.getFinishedSpans().length, 1, 'no stage spans for a request that never ran');
  });

  test('a malformed traceparent is ignored', async () => {
    exporter.reset();
    await detectCall(srv.client, { image: bus }, { traceparent: '00-zzzz-1234-01' });
    const [span] = serverSpans('Detect');
    assert.ok(span);
    assert.equal(span.parentSpanContext, undefined);
  });

  test("a Stream is one server span with frame counts, in the caller's trace", async () => {
    exporter.reset();
    const traceId = randomBytes(16).toString('hex');
    const s = openStream(srv.client, {
      policy: 'block',
      maxInFlight: 2,
      metadata: { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
    });
    for (let i = 1; i <= 3; i++) s.send(i, bus);
    s.call.end();
    assert.equal(await s.done, null);
    const [span] = serverSpans('Stream');
    assert.ok(span);
    assert.equal(span.spanContext().traceId, traceId);
    assert.equal(span.attributes['rpc.grpc.status_code'], 0);
    assert.equal(span.attributes['sightline.stream.frames.delivered'], 3);
    assert.equal(span.attributes['sightline.stream.frames.dropped'], 0);
  });
});

describe('tracing off', () => {
  test('exporter "none" creates no provider and no spans', () => {
    const t = Tracing.init({ exporter: 'none', serviceName: 'sightline' });
    assert.equal(t.enabled, false);
    assert.equal(t.provider, null);
    const md = { get: () => ['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'] };
    assert.equal(t.startRequestSpan('x', md, {}), undefined);
  });
});

describe('OTLP exporter', () => {
  test('exporter "otlp" posts spans as OTLP/HTTP protobuf to the configured endpoint', async (t) => {
    const received: { path: string; contentType: string; bytes: number }[] = [];
    const collector = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({
          path: req.url ?? '',
          contentType: String(req.headers['content-type']),
          bytes: Buffer.concat(chunks).length,
        });
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    t.after(() => collector.close());
    const port = (collector.address() as { port: number }).port;
    const tracing = Tracing.init(
      { exporter: 'otlp', endpoint: `http://127.0.0.1:${port}/v1/traces`, serviceName: 'sightline-test' },
      { serviceVersion: '0.0.0' },
    );
    assert.equal(tracing.enabled, true);
    const span = tracing.startRequestSpan(
      'sightline.v1.Detector/Detect',
      { get: () => [] },
      { 'rpc.method': 'Detect' },
    );
    assert.ok(span);
    tracing.recordStages(span, { decodeMs: 1, preprocessMs: 1, queueMs: 0, inferenceMs: 5, postprocessMs: 1 });
    tracing.endRequestSpan(span, 0);
    await tracing.forceFlush();
    await tracing.shutdown();
    assert.equal(received.length, 1);
    assert.equal(received[0]!.path, '/v1/traces');
    assert.equal(received[0]!.contentType, 'application/x-protobuf');
    assert.ok(received[0]!.bytes > 100, 'six spans in the body');
  });
});
