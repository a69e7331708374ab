/** Registry over gRPC: upload, list, promote, rollback, delete, pins and errors, on a real server. */
import { status } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  ModelEventType,
  VersionState,
  type ModelEvent,
  type RegistryClient,
} from '../../src/generated/sightline/v1/registry.js';
import { pick, scrape } from '../observability/support.js';
import { rejectsWith } from '../support/assert.js';
import { sharedDataOrSkip } from '../support/data.js';
import { call, registryClient, uploadBytes, uploadFile } from '../support/registry.js';
import { startTestServer, type TestServer } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('registry');

describe('Registry service', { skip: !haveData }, () => {
  let srv: TestServer;
  let reg: RegistryClient;
  let bus: Buffer;
  const events: ModelEvent[] = [];
  before(async () => {
    bus = readFileSync(imagePath('bus.jpg'));
    srv = await startTestServer({
      models: [{ name: 'det', path: modelPath('yolov8n_int8.onnx') }],
      pool: { workers: 2, warmupRuns: 1 },
    });
    reg = registryClient(srv.address);
    const w = reg.watchModels({ models: [] });
    w.on('data', (e: ModelEvent) => events.push(e));
    w.on('error', () => undefined);
  });
  /** sightline_model_ready of det on /metrics: [version, value] pairs, by version. */
  const readiness = async () =>
    pick((await scrape(srv.app.admin!.port)).exposition, 'sightline_model_ready', { sightline_model: 'det' })
      .map((r) => [r.labels.sightline_model_version, r.value])
      .sort();
  after(async () => {
    reg?.close();
    await srv?.close();
  });

  test('serve --model registered the file as version 1 and promoted it', async () => {
    const m = await call(reg, reg.listModels, {});
    assert.deepEqual(
      m.models.map((x) => [x.name, x.activeVersion, x.rollbackVersion, x.versionCount]),
      [['det', 1, 0, 1]],
    );
    const v = await call(reg, reg.getVersion, { model: 'det', version: 1 });
    assert.equal(
      v.sha256,
      createHash('sha256')
        .update(readFileSync(modelPath('yolov8n_int8.onnx')))
        .digest('hex'),
    );
    assert.equal(v.family, 'ultralytics');
    assert.deepEqual([v.inputWidth, v.inputHeight], [640, 640]);
    assert.equal(v.classNames.length, 80);
    assert.equal(v.onnxMetadata['task'], 'detect');
    const h = await call(reg, reg.getHistory, { model: 'det', limit: 0 });
    assert.equal(h.entries.length, 1);
    assert.equal(h.entries[0]!.action, 'promote');
  });

  test('upload, promote, rollback and delete, with the model card kept', async () => {
    const v2 = await uploadFile(reg, modelPath('yolo11n_int8_320.onnx'), {
      model: 'det',
      notes: 'YOLO11n int8 at 320: faster, mAP@0.5 0.45 on coco128',
    });
    assert.equal(v2.version, 2);
    assert.equal(v2.created, true);
    assert.deepEqual([v2.inputWidth, v2.inputHeight], [320, 320]);
    assert.match((await call(reg, reg.getVersion, { model: 'det', version: 2 })).notes, /coco128/);
    assert.equal((await srv.detect({ image: bus })).version, '1', 'an upload alone changes nothing served');

    const st = await call(reg, reg.promote, { model: 'det', version: 2, reason: 'faster' });
    assert.deepEqual([st.activeVersion, st.rollbackVersion], [2, 1]);
    assert.ok(
      st.replicas[0]!.versions.some((l) => l.version === 1 && l.state === VersionState.VERSION_STATE_READY),
      'the rollback target stays warm',
    );
    assert.equal((await srv.detect({ image: bus })).version, '2');
    assert.equal((await srv.detect({ image: bus, version: '1' })).version, '1', 'a loaded version can be pinned');
    assert.deepEqual(await readiness(), [
      ['1', 0],
      ['2', 1],
    ]);

    const rb = await call(reg, reg.rollback, { model: 'det', reason: 'regression' });
    assert.deepEqual([rb.activeVersion, rb.rollbackVersion], [1, 2]);
    assert.equal((await srv.detect({ image: bus })).version, '1');

    await rejectsWith(
      call(reg, reg.deleteVersion, { model: 'det', version: 1, reason: '' }),
      status.FAILED_PRECONDITION,
      /active/,
    );
    await rejectsWith(
      call(reg, reg.deleteVersion, { model: 'det', version: 2, reason: '' }),
      status.FAILED_PRECONDITION,
      /rollback/,
    );

    const v3 = await uploadFile(reg, modelPath('yolox_nano.onnx'), {
      model: 'det',
      labels: readFileSync(modelPath('../datasets/coco128/classes.txt'), 'utf8').trim().split('\n'),
    });
    assert.equal(v3.version, 3);
    assert.equal(v3.family, 'yolox');
    assert.equal(v3.classNames[5], 'bus');
    await call(reg, reg.promote, { model: 'det', version: 3, reason: '' });
    const s3 = await call(reg, reg.getModelStatus, { model: 'det' });
    assert.deepEqual([s3.activeVersion, s3.rollbackVersion], [3, 1]);
    const r3 = await srv.detect({ image: bus });
    assert.equal(r3.version, '3');
    assert.ok(r3.detections.some((d) => d.label === 'bus'));
    // Version 2 is no longer pointed to: it is drained and unloaded, and can be deleted.
    for (
      let i = 0;
      i < 100 &&
      (await call(reg, reg.getModelStatus, { model: 'det' })).replicas[0]!.versions.some((l) => l.version === 2);
      i++
    )
      await new Promise((r) => setTimeout(r, 20));
    assert.ok(
      !(await call(reg, reg.getModelStatus, { model: 'det' })).replicas[0]!.versions.some((l) => l.version === 2),
      'version 2 was unloaded',
    );
    await rejectsWith(srv.detect({ image: bus, version: '2' }), status.FAILED_PRECONDITION, /not loaded/);
    assert.deepEqual(
      await readiness(),
      [
        ['1', 0],
        ['3', 1],
      ],
      'readiness of the loaded versions only: the active one 1, the warm rollback target 0',
    );
    const del = await call(reg, reg.deleteVersion, { model: 'det', version: 2, reason: 'superseded' });
    assert.equal(del.blobRemoved, true);
    await rejectsWith(call(reg, reg.getVersion, { model: 'det', version: 2 }), status.NOT_FOUND, /version 2/);
    await rejectsWith(srv.detect({ image: bus, version: '2' }), status.NOT_FOUND, /version/);
    const v4 = await uploadFile(reg, modelPath('yolo11n_int8_320.onnx'), { model: 'det' });
    assert.equal(v4.version, 4, 'version numbers are never reused');

    const hist = await call(reg, reg.getHistory, { model: 'det', limit: 0 });
    assert.deepEqual(
      hist.entries.map((h) => [h.action, h.fromVersion, h.toVersion]),
      [
        ['delete', 2, 0],
        ['promote', 1, 3],
        ['rollback', 2, 1],
        ['promote', 1, 2],
        ['promote', 0, 1],
      ],
    );
    assert.ok(hist.entries.every((h) => h.actor.length > 0 && h.at.length > 0));
    // Watchers saw every change as it happened.
    const kinds = events.map((e) => ModelEventType[e.type]);
    assert.equal(kinds[0], 'MODEL_EVENT_TYPE_SNAPSHOT');
    for (const k of [
      'MODEL_EVENT_TYPE_VERSION_ADDED',
      'MODEL_EVENT_TYPE_PROMOTED',
      'MODEL_EVENT_TYPE_ROLLED_BACK',
      'MODEL_EVENT_TYPE_VERSION_DELETED',
    ])
      assert.ok(kinds.includes(k), k);
    const lastPromote = events.filter((e) => e.type === ModelEventType.MODEL_EVENT_TYPE_PROMOTED).at(-1)!;
    assert.equal(lastPromote.activeVersion, 3);
    assert.equal(lastPromote.activeSha256, v3.sha256);
  });

  test('re-uploading identical bytes returns the existing version', async () => {
    const again = await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
    assert.equal(again.version, 1);
    assert.equal(again.created, false);
  });

  test('an expected sha256 that does not match is refused, and nothing is stored', async () => {
    const before = (await call(reg, reg.listVersions, { model: 'det' })).versions.length;
    await rejectsWith(
      uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'other', expectedSha256: '0'.repeat(64) }),
      status.INVALID_ARGUMENT,
      /sha256/,
    );
    assert.equal((await call(reg, reg.listVersions, { model: 'det' })).versions.length, before);
    await rejectsWith(call(reg, reg.listVersions, { model: 'other' }), status.NOT_FOUND, /other/);
  });

  test('a file that is not ONNX, and a model whose outputs match no family, are refused with the reason', async () => {
    await rejectsWith(
      uploadBytes(reg, Buffer.from('definitely not a model'), { model: 'junk' }),
      status.INVALID_ARGUMENT,
      /not a servable model/,
    );
    await rejectsWith(
      uploadFile(reg, modelPath('nanodet_m_320.onnx'), { model: 'nanodet' }),
      status.INVALID_ARGUMENT,
      /cls_score0.*1600/,
    );
  });

  test('errors: unknown model or version, rollback without a target, bad names, empty upload', async () => {
    await rejectsWith(call(reg, reg.promote, { model: 'nope', version: 1, reason: '' }), status.NOT_FOUND, /nope/);
    await rejectsWith(call(reg, reg.promote, { model: 'det', version: 99, reason: '' }), status.NOT_FOUND, /99/);
    await rejectsWith(
      call(reg, reg.getModelStatus, { model: '../etc' }),
      status.INVALID_ARGUMENT,
      /invalid model name/,
    );
    await rejectsWith(uploadBytes(reg, Buffer.alloc(0), { model: 'x' }), status.INVALID_ARGUMENT, /servable/);
    const single = await startTestServer({
      models: [{ name: 'solo', path: modelPath('yolo11n_int8_320.onnx') }],
      pool: { workers: 1, warmupRuns: 0 },
    });
    try {
      const r = registryClient(single.address);
      await rejectsWith(
        call(r, r.rollback, { model: 'solo', reason: '' }),
        status.FAILED_PRECONDITION,
        /no rollback target/,
      );
      r.close();
    } finally {
      await single.close();
    }
  });
});
