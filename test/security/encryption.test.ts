/** Model encryption at rest, end to end: encrypted blobs, served from memory, wrong key refused, rotation. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { generateKey } from '../../src/registry/index.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('encryption');

describe('model encryption at rest', { skip: !haveData }, () => {
  test('blobs are unreadable on disk, served after decryption in memory, refused with a wrong key, and survive rotation', async () => {
    const dataDir = tempDataDir();
    const k1 = join(dataDir, '..', `k1-${process.pid}`);
    const k2 = join(dataDir, '..', `k2-${process.pid}`);
    writeFileSync(k1, generateKey().toString('hex'));
    writeFileSync(k2, generateKey().toString('base64'));
    const model = readFileSync(modelPath('yolo11n_int8_320.onnx'));
    const bus = readFileSync(imagePath('bus.jpg'));
    const cfg = (keyFile?: string) => ({ registry: { dataDir }, models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }], encryption: keyFile ? { keyFile } : {}, pool: { workers: 1, warmupRuns: 0 } });
    try {
      let srv = await startTestServer(cfg(k1));
      assert.ok((await srv.detect({ image: bus })).detections.some((d) => d.label === 'bus'));
      await srv.close();
      const blobDir = join(dataDir, 'blobs', 'sha256');
      const [name] = readdirSync(blobDir);
      const onDisk = readFileSync(join(blobDir, name!));
      assert.equal(onDisk.subarray(0, 6).toString('latin1'), 'SLENC1');
      assert.equal(onDisk.indexOf(model.subarray(4096, 4096 + 64)), -1, 'no plain model bytes on disk');

      await assert.rejects(startTestServer(cfg(k2)), /encrypted with key/, 'a wrong key serves nothing');
      await assert.rejects(startTestServer(cfg()), /encrypted with key/, 'a missing key serves nothing');

      const r = await runCli(['key', 'rotate', '--data-dir', dataDir, '--from-key-file', k1, '--to-key-file', k2]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /1 rewritten/);
      const again = await runCli(['key', 'rotate', '--data-dir', dataDir, '--from-key-file', k1, '--to-key-file', k2]);
      assert.match(again.stdout, /1 already done/, 'rotation is idempotent, so an interrupted one is resumed by running it again');
      srv = await startTestServer(cfg(k2));
      assert.ok((await srv.detect({ image: bus })).detections.some((d) => d.label === 'bus'));
      await srv.close();
      await assert.rejects(startTestServer(cfg(k1)), /encrypted with key/);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(k1, { force: true });
      rmSync(k2, { force: true });
    }
  });
});
