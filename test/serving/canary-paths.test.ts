/**
 * A canary splits every way a client asks for detections, not only gRPC Detect: HTTP /v1/detect,
 * Detect streams, and Open Inference ModelInfer (gRPC and HTTP). Every answer names the version that
 * produced it; a client's request id keeps its requests on one version (a stream's frames all on the
 * stream's; a ModelInfer call's images all on the call's); and every request is counted in the
 * canary's arms. Then the canary and shadow options an RPC client can send are checked by the server.
 * A real server in role all on loopback, real models (the candidate is yolo11n_int8_320 itself with
 * one unknown protobuf field appended: another version, the same answers, no rollback).
 */
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { GRPCInferenceServiceClient } from '../../src/generated/inference/open_inference_grpc.js';
import type { PromoteRequest } from '../../src/generated/sightline/v1/registry.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient, uploadBytes } from '../support/registry.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { openStream } from '../support/stream.js';
import { waitFor } from '../support/wait.js';

const haveData = sharedDataOrSkip('canary paths');
const bus = readFileSync(imagePath('bus.jpg'));
const zidane = readFileSync(imagePath('zidane.jpg'));
const withId = (id: string) => {
  const md = new Metadata();
  md.set('x-request-id', id);
  return md;
};
/** The versions that answered, each request id's first, and every answer of a request id. */
const tally = () => ({ versions: new Map<string, number>(), byId: new Map<string, Set<string>>(), requests: 0 });
function seen(t: ReturnType<typeof tally>, id: string, version: string, images = 1): void {
  t.versions.set(version, (t.versions.get(version) ?? 0) + images);
  t.byId.set(id, (t.byId.get(id) ?? new Set()).add(version));
  t.requests += images;
}
/** Both versions answered, and each request id (or stream, or call) always by the same one. */
function split(t: ReturnType<typeof tally>, what: string): void {
  assert.deepEqual([...t.versions.keys()].sort(), ['1', '2'], `${what}: both versions answer (${[...t.versions]})`);
  const mixed = [...t.byId].filter(([, v]) => v.size > 1).map(([id]) => id);
  assert.deepEqual(mixed, [], `${what}: one version per request id`);
  console.log(`# ${what}: ${[...t.versions].map(([v, n]) => `${n} by version ${v}`).join(', ')}`);
}

describe('a canary on every path, and the trial options the server accepts', { skip: !haveData }, () => {
  let srv: TestServer;
  let reg: ReturnType<typeof registryClient>;
  before(async () => {
    srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 2, warmupRuns: 1 },
      http: { enabled: true, port: 0 },
      fleet: { replicaName: 'solo', reportIntervalMs: 200 },
    });
    reg = registryClient(srv.address);
    const copy = Buffer.concat([readFileSync(modelPath('yolo11n_int8_320.onnx')), Buffer.from([0xc0, 0x3e, 2])]);
    assert.equal((await uploadBytes(reg, copy, { model: 'det' })).version, 2);
  });
  after(async () => {
    reg?.close();
    await srv?.close();
  });

  test('HTTP /v1/detect, Detect streams and ModelInfer (gRPC and HTTP) split by request id, each answer naming its version', async () => {
    await call(reg, reg.promote, {
      model: 'det',
      version: 2,
      reason: 'paths',
      canary: { percent: 50, minSamples: 1_000_000, p99Margin: 100 },
    } as PromoteRequest);
    await waitFor(
      async () =>
        (await call(reg, reg.getModelStatus, { model: 'det' })).replicas[0]?.versions.some(
          (v) => v.version === 2 && v.state !== 1 && v.state !== 2,
        ),
      60_000,
      'the canary version warm',
    );
    let sent = 0;

    // HTTP /v1/detect: the x-sightline-model-version header names the version; a retried id keeps it.
    const http = tally();
    const base = `http://127.0.0.1:${srv.app.http!.port}`;
    for (let i = 0; i < 16; i++) {
      for (const retry of i < 3 ? [0, 1, 2] : [0]) {
        const r = await fetch(`${base}/v1/detect`, {
          method: 'POST',
          body: bus,
          headers: { 'content-type': 'image/jpeg', 'x-request-id': `http-${i}` },
        });
        assert.equal(r.status, 200, `${i}.${retry}`);
        const body = (await r.json()) as { version: string };
        const version = r.headers.get('x-sightline-model-version')!;
        assert.equal(String(body.version), version, 'the body names the same version');
        seen(http, `http-${i}`, version);
        sent++;
      }
    }
    split(http, 'HTTP /v1/detect');

    // Detect streams: every frame of a stream on the stream's version; a stream reopened with the same
    // x-request-id (a client reconnecting) lands on it again.
    const streams = tally();
    for (let i = 0; i < 12; i++) {
      for (const again of i < 2 ? [0, 1] : [0]) {
        const s = openStream(srv.client, { maxInFlight: 2, metadata: { 'x-request-id': `stream-${i}` } });
        for (let f = 1; f <= 3; f++) s.send(f, f % 2 ? bus : zidane);
        s.call.end();
        assert.equal(await s.done, null, `stream ${i}.${again}`);
        assert.equal(s.responses.length, 3);
        for (const r of s.responses) seen(streams, `stream-${i}`, r.version);
        sent += 3;
      }
    }
    split(streams, 'Detect streams');

    // ModelInfer over gRPC: by x-request-id, else by the request's own id; a call's images all on one version.
    const oip = new GRPCInferenceServiceClient(srv.address, credentials.createInsecure());
    const infer = (id: string, images: Buffer[], md = new Metadata()) =>
      call(
        oip,
        oip.modelInfer,
        {
          modelName: 'det',
          modelVersion: '',
          id,
          parameters: {},
          inputs: [
            {
              name: 'IMAGE',
              datatype: 'BYTES',
              shape: [BigInt(images.length)],
              parameters: {},
            },
          ],
          outputs: [],
          // BYTES elements as Triton's clients send them: a 4-byte little-endian length before each.
          rawInputContents: [Buffer.concat(images.flatMap((b) => [Buffer.from(Uint32Array.of(b.length).buffer), b]))],
        },
        { metadata: md, deadlineMs: 30_000 },
      );
    const grpcInfer = tally();
    try {
      for (let i = 0; i < 16; i++) {
        const images = i % 4 === 0 ? [bus, zidane] : [bus];
        for (const retry of i < 3 ? [0, 1] : [0]) {
          const byHeader = await infer(`body-${i}-${retry}`, images, withId(`oip-${i}`));
          seen(grpcInfer, `oip-${i}`, byHeader.modelVersion, images.length);
          const byOwnId = await infer(`own-${i}`, images);
          seen(grpcInfer, `own-${i}`, byOwnId.modelVersion, images.length);
          sent += 2 * images.length;
        }
      }
    } finally {
      oip.close();
    }
    split(grpcInfer, 'ModelInfer over gRPC');

    // ModelInfer over HTTP (OIP REST, JSON): by x-request-id.
    const httpInfer = tally();
    for (let i = 0; i < 16; i++) {
      const r = await fetch(`${base}/v2/models/det/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': `rest-${i}` },
        body: JSON.stringify({
          inputs: [{ name: 'IMAGE', datatype: 'BYTES', shape: [1], data: [bus.toString('base64')] }],
        }),
      });
      assert.equal(r.status, 200);
      seen(httpInfer, `rest-${i}`, ((await r.json()) as { model_version: string }).model_version);
      sent++;
    }
    split(httpInfer, 'ModelInfer over HTTP');

    // Every image of every path is counted in one of the canary's arms (and the arms match the answers).
    const answered = [http, streams, grpcInfer, httpInfer].reduce(
      (n, t) => ({ v1: n.v1 + (t.versions.get('1') ?? 0), v2: n.v2 + (t.versions.get('2') ?? 0) }),
      { v1: 0, v2: 0 },
    );
    assert.equal(answered.v1 + answered.v2, sent);
    const { value: arms } = await waitFor(
      async () => {
        const c = (await call(reg, reg.getModelStatus, { model: 'det' })).canary;
        const a = { v1: Number(c?.baseline?.requests ?? 0), v2: Number(c?.canary?.requests ?? 0) };
        return a.v1 + a.v2 === sent && a;
      },
      10_000,
      `${sent} requests counted in the canary's arms`,
    );
    assert.deepEqual(arms, answered, 'each request counted in the arm of the version that answered it');
    await call(reg, reg.stopCanary, { model: 'det', reason: 'done' });
  });

  test('canary and shadow options out of range are INVALID_ARGUMENT naming the field and the allowed range', async () => {
    const refused = async (req: Promise<unknown>, message: RegExp) =>
      assert.rejects(req, (e: ServiceError) => {
        assert.equal(status[e.code], 'INVALID_ARGUMENT', e.details);
        assert.match(e.details, message);
        return true;
      });
    const promote = (canary: Partial<NonNullable<PromoteRequest['canary']>>) =>
      call(reg, reg.promote, {
        model: 'det',
        version: 2,
        reason: '',
        canary: { percent: 10, minSamples: 0, ...canary },
      } as PromoteRequest);
    const margin =
      /^canary\.p99_margin must be a finite number >= 0 \(0\.2: roll back above 1\.2 × the baseline p99\), or absent/;
    for (const p99Margin of [-0.5, Number.NaN, Number.POSITIVE_INFINITY])
      await refused(promote({ p99Margin }), new RegExp(`${margin.source}.*, got ${p99Margin}$`));
    for (const errorRateMargin of [-0.01, 1.5, Number.NaN])
      await refused(
        promote({ errorRateMargin }),
        new RegExp(`^canary\\.error_rate_margin must be in \\[0, 1\\] .*, got ${errorRateMargin}$`),
      );
    for (const percent of [0, 100, -3, Number.NaN])
      await refused(
        promote({ percent }),
        new RegExp(`^canary\\.percent must be above 0 and below 100 \\(a percent of requests\\), got ${percent}$`),
      );
    for (const sample of [0, -0.1, 1.5, Number.NaN])
      await refused(
        call(reg, reg.startShadow, { model: 'det', version: 2, sample, reason: '' }),
        new RegExp(`^sample must be a share of requests in \\(0, 1\\] \\(0\\.1: one request in ten\\), got ${sample}$`),
      );
    const st = await call(reg, reg.getModelStatus, { model: 'det' });
    assert.deepEqual([st.activeVersion, st.canary, st.shadow], [1, undefined, undefined], 'nothing started');
    // In range, both are accepted: a margin of 0 and an error margin of 1 are the bounds.
    await promote({ p99Margin: 0, errorRateMargin: 1, percent: 0.5 });
    await call(reg, reg.stopCanary, { model: 'det', reason: '' });
  });
});
