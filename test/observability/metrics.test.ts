/**
 * /metrics on the admin port after known traffic: exact counts per status and version, histogram
 * sample counts per stage, detections, pool gauges, process and runtime metrics. Real server, real model.
 */
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { openStream } from '../support/stream.js';
import { detectCall, pick, scrape, total, type Exposition } from './support.js';

const haveData = sharedDataOrSkip('observability metrics');

const DETECT = { rpc_method: 'Detect', sightline_model: 'yolo11n', sightline_model_version: '1' };
const STAGES = ['decode', 'preprocess', 'queue', 'inference', 'postprocess'];

/** Every histogram series: cumulative buckets never decrease and le="+Inf" equals _count. */
function assertHistogramsConsistent(e: Exposition): void {
  for (const [family, type] of e.types) {
    if (type !== 'histogram') continue;
    for (const c of pick(e, `${family}_count`)) {
      const key = JSON.stringify(c.labels);
      const buckets = e.samples.filter(
        (s) =>
          s.name === `${family}_bucket` &&
          JSON.stringify({ ...s.labels, le: undefined }) === JSON.stringify({ ...c.labels, le: undefined }),
      );
      assert.ok(buckets.length > 1, `${family} ${key} has buckets`);
      for (let i = 1; i < buckets.length; i++)
        assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${family} ${key}: buckets are cumulative`);
      const inf = buckets.find((b) => b.labels.le === '+Inf');
      assert.equal(inf?.value, c.value, `${family} ${key}: +Inf bucket = count`);
    }
  }
}

describe('Prometheus metrics after known traffic', { skip: !haveData }, () => {
  let srv: TestServer;
  let bus: Buffer;
  let port: number;
  const okDetections: number[] = [];
  const requestIds: string[] = [];

  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer({
      models: [{ name: 'yolo11n', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 2, maxQueue: 16, warmupRuns: 1 },
    });
    assert.ok(srv.app.admin, 'the admin server is on by default');
    port = srv.app.admin.port;
    // Known traffic: 3 OK, 2 INVALID_ARGUMENT (on the default model), 1 NOT_FOUND (unknown model).
    for (let i = 0; i < 3; i++) {
      const r = await detectCall(srv.client, { image: bus });
      assert.ok(r.response, `detect ${i} succeeded: ${r.error?.details}`);
      okDetections.push(r.response.detections.length);
      requestIds.push(String(r.headers.get('x-request-id')[0]));
    }
    const bad1 = await detectCall(srv.client, { image: Buffer.alloc(0) });
    const bad2 = await detectCall(srv.client, { image: bus, confidenceThreshold: 2 });
    const missing = await detectCall(srv.client, { image: bus, model: 'no-such-model' });
    assert.equal(bad1.error?.code, status.INVALID_ARGUMENT);
    assert.equal(bad2.error?.code, status.INVALID_ARGUMENT);
    assert.equal(missing.error?.code, status.NOT_FOUND);
    requestIds.push(String(bad1.headers.get('x-request-id')[0]));
  });
  after(() => srv?.close());

  test('the exposition is Prometheus text format 0.0.4 and every histogram is consistent', async () => {
    const s = await scrape(port);
    assert.equal(s.status, 200);
    assert.equal(s.contentType, 'text/plain; version=0.0.4; charset=utf-8');
    assert.doesNotMatch(s.text, /^# UNIT/m);
    assert.equal(total(s.exposition, 'target_info', { service_name: 'sightline' }), 1);
    assertHistogramsConsistent(s.exposition);
  });

  test('calls per gRPC status code, model and version', async () => {
    const { exposition: e } = await scrape(port);
    const calls = (code: number, model = 'yolo11n', version = '1') =>
      total(e, 'rpc_server_call_duration_seconds_count', {
        rpc_system: 'grpc',
        rpc_service: 'sightline.v1.Detector',
        rpc_method: 'Detect',
        rpc_grpc_status_code: String(code),
        sightline_model: model,
        sightline_model_version: version,
      });
    assert.equal(calls(status.OK), 3);
    assert.equal(
      calls(status.INVALID_ARGUMENT),
      2,
      'a bad request for the default model is labelled with the version it would have used',
    );
    assert.equal(calls(status.NOT_FOUND, 'unknown', 'unknown'), 1, 'unknown model names never become label values');
    assert.equal(pick(e, 'rpc_server_call_duration_seconds_count').length, 3, 'no other series');
    assert.equal(total(e, 'rpc_server_call_duration_seconds_count'), 6);
    assert.ok(!e.samples.some((s) => Object.values(s.labels).includes('no-such-model')));
    // Per image: the same split (one image per Detect call).
    assert.equal(total(e, 'sightline_request_duration_seconds_count', { ...DETECT, rpc_grpc_status_code: '0' }), 3);
    assert.equal(total(e, 'sightline_request_duration_seconds_count', { ...DETECT, rpc_grpc_status_code: '3' }), 2);
    assert.equal(total(e, 'sightline_images_total', DETECT), 3);
    assert.equal(total(e, 'sightline_requests_active', { rpc_method: 'Detect' }), 0, 'no call in progress');
  });

  test('stage histograms: one sample per stage per successful image, in seconds', async () => {
    const { exposition: e } = await scrape(port);
    assert.deepEqual(
      [...new Set(pick(e, 'sightline_stage_duration_seconds_count').map((s) => s.labels.sightline_stage))].sort(),
      [...STAGES].sort(),
    );
    for (const stage of STAGES) {
      const m = { ...DETECT, sightline_stage: stage };
      assert.equal(total(e, 'sightline_stage_duration_seconds_count', m), 3, `${stage} count`);
      const sum = total(e, 'sightline_stage_duration_seconds_sum', m);
      assert.ok(sum >= 0 && sum < 30, `${stage} sum ${sum} is seconds`);
    }
    const inference = total(e, 'sightline_stage_duration_seconds_sum', { ...DETECT, sightline_stage: 'inference' });
    assert.ok(inference > 0, 'inference took measurable time');
    // Total per image covers the stages.
    const stagesSum = STAGES.reduce(
      (a, st) => a + total(e, 'sightline_stage_duration_seconds_sum', { ...DETECT, sightline_stage: st }),
      0,
    );
    assert.ok(
      total(e, 'sightline_request_duration_seconds_sum', { ...DETECT, rpc_grpc_status_code: '0' }) >= stagesSum * 0.99,
    );
    // Latency buckets: 5 ms … 10 s.
    const les = pick(e, 'sightline_stage_duration_seconds_bucket', { ...DETECT, sightline_stage: 'decode' }).map(
      (s) => s.labels.le,
    );
    assert.equal(les[0], '0.005');
    assert.deepEqual(les.slice(-2), ['10', '+Inf']);
  });

  test('detections per image, confidence distribution and class mix', async () => {
    const { exposition: e } = await scrape(port);
    const m = { sightline_model: 'yolo11n', sightline_model_version: '1' };
    const dets = okDetections.reduce((a, b) => a + b, 0);
    assert.ok(dets > 0);
    assert.equal(total(e, 'sightline_request_detections_count', m), 3);
    assert.equal(total(e, 'sightline_request_detections_sum', m), dets);
    assert.equal(total(e, 'sightline_detection_confidence_count', m), dets);
    const conf = pick(e, 'sightline_detection_confidence_bucket', m);
    assert.equal(conf.length, 21, '20 buckets of 0.05 and +Inf');
    assert.equal(conf.find((b) => b.labels.le === '0.2')?.value, 0, 'nothing under the default 0.25 threshold');
    assert.equal(conf.find((b) => b.labels.le === '1')?.value, dets);
    assert.equal(total(e, 'sightline_detections_total', m), dets);
    assert.ok(
      total(e, 'sightline_detections_total', { ...m, sightline_class: 'bus' }) >= 3,
      'a bus in each of the 3 images',
    );
    assert.ok(total(e, 'sightline_detections_total', { ...m, sightline_class: 'person' }) >= 3);
  });

  test('pool gauges, model readiness and model events', async () => {
    const { exposition: e } = await scrape(port);
    assert.equal(total(e, 'sightline_pool_workers'), 2);
    assert.equal(total(e, 'sightline_pool_admission_limit'), 18, 'workers + maxQueue');
    for (const name of [
      'sightline_pool_workers_busy',
      'sightline_pool_utilization_ratio',
      'sightline_pool_queue_depth',
      'sightline_pool_admitted',
    ]) {
      assert.equal(pick(e, name).length, 1, `${name} present`);
    }
    const util = total(e, 'sightline_pool_utilization_ratio');
    assert.ok(util >= 0 && util <= 1);
    assert.equal(total(e, 'sightline_model_ready', { sightline_model: 'yolo11n', sightline_model_version: '1' }), 1);
    for (const event of ['load', 'warmup']) {
      const m = { sightline_model: 'yolo11n', sightline_model_version: '1', sightline_model_event: event };
      assert.equal(total(e, 'sightline_model_events_total', m), 1, `${event} event`);
      assert.equal(total(e, 'sightline_model_event_duration_seconds_count', m), 1, `${event} duration`);
      assert.ok(total(e, 'sightline_model_event_duration_seconds_sum', m) > 0);
    }
  });

  test('process memory, CPU and event-loop metrics come from the runtime instrumentation', async () => {
    const { exposition: e } = await scrape(port);
    assert.ok(total(e, 'process_memory_usage_bytes') > 50 * 1024 * 1024, 'resident memory in bytes');
    assert.ok(total(e, 'process_cpu_time_seconds_total') > 0);
    assert.ok(total(e, 'v8js_memory_heap_used_bytes') > 0);
    for (const name of [
      'nodejs_eventloop_delay_p99_seconds',
      'nodejs_eventloop_delay_max_seconds',
      'nodejs_eventloop_utilization_ratio',
    ]) {
      assert.equal(pick(e, name).length, 1, `${name} present`);
      assert.ok(Number.isFinite(total(e, name)));
    }
    assert.equal(e.types.get('process_cpu_time_seconds_total'), 'counter');
    assert.equal(e.types.get('nodejs_eventloop_delay_p99_seconds'), 'gauge');
  });

  test('stream frames delivered and dropped, and the stream call itself', async () => {
    const s = openStream(srv.client, { policy: 'latest', maxInFlight: 1 });
    const frames = 12;
    for (let i = 1; i <= frames; i++) s.send(i, bus);
    s.call.end();
    assert.equal(await s.done, null);
    const delivered = s.responses.filter((r) => !r.dropped).length;
    const dropped = s.responses.filter((r) => r.dropped).length;
    assert.equal(delivered + dropped, frames);
    assert.ok(dropped > 0, 'the latest policy dropped frames sent faster than one in flight');
    const { exposition: e } = await scrape(port);
    const m = { sightline_model: 'yolo11n', sightline_model_version: '1' };
    assert.equal(total(e, 'sightline_stream_frames_total', { ...m, sightline_stream_outcome: 'delivered' }), delivered);
    assert.equal(total(e, 'sightline_stream_frames_total', { ...m, sightline_stream_outcome: 'dropped' }), dropped);
    assert.equal(
      total(e, 'rpc_server_call_duration_seconds_count', { ...m, rpc_method: 'Stream', rpc_grpc_status_code: '0' }),
      1,
    );
    assert.equal(
      total(e, 'sightline_request_duration_seconds_count', { ...m, rpc_method: 'Stream', rpc_grpc_status_code: '0' }),
      delivered,
    );
    assert.equal(
      total(e, 'sightline_stage_duration_seconds_count', { ...m, rpc_method: 'Stream', sightline_stage: 'inference' }),
      delivered,
    );
    assert.equal(total(e, 'sightline_images_total', { ...m, rpc_method: 'Stream' }), delivered);
    // Detect counts are untouched by the stream.
    assert.equal(total(e, 'rpc_server_call_duration_seconds_count', { ...DETECT, rpc_grpc_status_code: '0' }), 3);
    assert.equal(total(e, 'sightline_requests_active', { rpc_method: 'Stream' }), 0);
  });

  test('every call gets a request id in its response headers; a client id is kept', async () => {
    assert.equal(new Set(requestIds).size, requestIds.length);
    for (const id of requestIds) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const mine = await detectCall(srv.client, { image: bus }, { 'x-request-id': 'cam-7.frame-42' });
    assert.equal(mine.headers.get('x-request-id')[0], 'cam-7.frame-42');
    const odd = await detectCall(srv.client, { image: bus }, { 'x-request-id': 'has spaces and "quotes"' });
    assert.match(String(odd.headers.get('x-request-id')[0]), /^[0-9a-f-]{36}$/, 'an unusable client id is replaced');
  });
});
