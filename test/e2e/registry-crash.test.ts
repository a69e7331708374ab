/** Crash safety of a real server process: SIGKILL mid-upload and mid-promote; corrupted blobs at start-up. */
import { status, type ServiceError } from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { chmodSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { detect, detectorClient } from '../../src/cli/client.js';
import { sharedDataOrSkip } from '../support/data.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { call, registryClient, uploadFile } from '../support/registry.js';
import { tempDataDir } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('registry-crash');

const start = (dataDir: string) =>
  serveProcess(['--model', modelPath('yolo11n_int8_320.onnx'), '--name', 'det', '--workers', '1'], {
    SIGHTLINE_REGISTRY__DATA_DIR: dataDir,
    SIGHTLINE_POOL__WARMUP_RUNS: '1',
  });

/** Pointers valid, history consistent with them, no upload leftovers, every version's blob intact. */
async function assertConsistent(s: ServedProcess, dataDir: string): Promise<{ versions: number[]; active: number }> {
  const reg = registryClient(s.address);
  try {
    const models = (await call(reg, reg.listModels, {})).models;
    assert.deepEqual(
      models.map((m) => m.name),
      ['det'],
    );
    const versions = (await call(reg, reg.listVersions, { model: 'det' })).versions;
    assert.ok(
      versions.every((v) => !v.corrupt),
      'no version is corrupt after a crash',
    );
    for (const v of versions) {
      const blob = join(dataDir, 'blobs', 'sha256', v.sha256);
      assert.equal(readFileSync(blob).length, Number(v.sizeBytes), `blob of version ${v.version} is complete`);
    }
    const m = models[0]!;
    assert.ok(
      versions.some((v) => v.version === m.activeVersion),
      'the active pointer names an existing version',
    );
    const hist = (await call(reg, reg.getHistory, { model: 'det', limit: 0 })).entries;
    assert.equal(hist[0]!.toVersion, m.activeVersion, 'the newest history entry leads to the active version');
    assert.deepEqual(readdirSync(join(dataDir, 'tmp')), [], 'no unfinished upload is left');
    // And it serves the active version.
    const d = detectorClient(s.address);
    const r = await detect(d, { image: readFileSync(imagePath('bus.jpg')) });
    d.close();
    assert.equal(r.version, String(m.activeVersion));
    return { versions: versions.map((v) => v.version), active: m.activeVersion };
  } finally {
    reg.close();
  }
}

describe('registry crash safety', { skip: !haveData }, () => {
  test('SIGKILL in the middle of an upload leaves no half version', async () => {
    const dataDir = tempDataDir();
    try {
      // Kill at several points: while bytes stream in, and around validation and the commit.
      for (const killAfterMs of [40, 150, 400]) {
        let s = await start(dataDir);
        const reg = registryClient(s.address);
        const upload = uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' }, 16 * 1024).catch(
          (e: ServiceError) => e,
        );
        await new Promise((r) => setTimeout(r, killAfterMs));
        await s.kill('SIGKILL');
        await upload;
        reg.close();
        s = await start(dataDir);
        const state = await assertConsistent(s, dataDir);
        assert.ok(
          state.versions.length <= 2 && state.versions[0] === 1,
          `versions after a kill at ${killAfterMs} ms: ${state.versions}`,
        );
        await s.kill('SIGTERM');
      }
      // The upload still works afterwards (and is idempotent if a killed one had completed).
      const s = await start(dataDir);
      const reg = registryClient(s.address);
      const v = await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
      assert.equal(v.version, 2);
      reg.close();
      await s.kill('SIGTERM');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('SIGKILL in the middle of a promote: the registry is either before or after it, never between', async () => {
    const dataDir = tempDataDir();
    try {
      let s = await start(dataDir);
      let reg = registryClient(s.address);
      await uploadFile(reg, modelPath('yolov8n_int8.onnx'), { model: 'det' });
      reg.close();
      const outcomes: number[] = [];
      for (const killAfterMs of [5, 60, 250]) {
        reg = registryClient(s.address);
        const active = (await call(reg, reg.getModelStatus, { model: 'det' })).activeVersion;
        const target = active === 1 ? 2 : 1;
        const p = call(reg, reg.promote, { model: 'det', version: target, reason: 'crash test' }).catch(
          (e: ServiceError) => e,
        );
        await new Promise((r) => setTimeout(r, killAfterMs));
        await s.kill('SIGKILL');
        await p;
        reg.close();
        s = await start(dataDir);
        const after = await assertConsistent(s, dataDir);
        assert.ok(after.active === active || after.active === target);
        outcomes.push(after.active);
      }
      console.log(`# promote killed at 5/60/250 ms: active afterwards ${outcomes.join(', ')}`);
      await s.kill('SIGTERM');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a blob corrupted on disk is detected at start-up and never served', async () => {
    const dataDir = tempDataDir();
    try {
      let s = await start(dataDir);
      let reg = registryClient(s.address);
      const v2 = await uploadFile(reg, modelPath('yolox_nano.onnx'), { model: 'det' });
      // Flip one byte in the middle of version 2's file while the server runs.
      const blob = join(dataDir, 'blobs', 'sha256', v2.sha256);
      chmodSync(blob, 0o644);
      const bytes = readFileSync(blob);
      bytes[bytes.length >> 1] ^= 0xff;
      writeFileSync(blob, bytes);
      // A promote whose load fails leaves the old version active and says why.
      await assert.rejects(
        call(reg, reg.promote, { model: 'det', version: 2, reason: '' }),
        (e: ServiceError) => e.code === status.FAILED_PRECONDITION && /corrupt|sha256/.test(e.details),
      );
      assert.equal((await call(reg, reg.getModelStatus, { model: 'det' })).activeVersion, 1);
      const d0 = detectorClient(s.address);
      assert.equal((await detect(d0, { image: readFileSync(imagePath('bus.jpg')) })).version, '1');
      d0.close();
      reg.close();
      await s.kill('SIGTERM');

      s = await start(dataDir);
      assert.ok(
        s.logs.some((l) => l.event === 'registry_blob_corrupt' && l.version === 2),
        'the corruption is reported',
      );
      reg = registryClient(s.address);
      const got = await call(reg, reg.getVersion, { model: 'det', version: 2 });
      assert.equal(got.corrupt, true);
      assert.match(got.corruptReason, /sha256|hash|match/i);
      await assert.rejects(
        call(reg, reg.promote, { model: 'det', version: 2, reason: '' }),
        (e: ServiceError) => e.code === status.FAILED_PRECONDITION && /corrupt/.test(e.details),
      );
      const d = detectorClient(s.address);
      assert.equal(
        (await detect(d, { image: readFileSync(imagePath('bus.jpg')) })).version,
        '1',
        'the server still serves the rest',
      );
      d.close();
      reg.close();
      await s.kill('SIGTERM');

      // Corrupt the active version's file too: the server starts, but never serves it.
      const v1 = join(
        dataDir,
        'blobs',
        'sha256',
        readdirSync(join(dataDir, 'blobs', 'sha256')).find((h) => h !== v2.sha256)!,
      );
      chmodSync(v1, 0o644);
      writeFileSync(v1, Buffer.concat([readFileSync(v1), Buffer.from('tampered')]));
      s = await serveProcess([], { SIGHTLINE_REGISTRY__DATA_DIR: dataDir });
      const d2 = detectorClient(s.address);
      await assert.rejects(
        detect(d2, { model: 'det', image: readFileSync(imagePath('bus.jpg')) }),
        (e: ServiceError) => e.code === status.UNAVAILABLE,
      );
      d2.close();
      await s.kill('SIGTERM');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
