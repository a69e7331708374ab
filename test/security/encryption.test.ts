/** Model encryption at rest, end to end: encrypted blobs, served from memory, wrong key refused, rotation. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { generateKey } from '../../src/registry/index.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir } from '../support/server.js';
import { registryClient, uploadFile } from '../support/registry.js';
import { cocoLabelsFile, imagePath, modelPath } from '../support/shared.js';

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
    const cfg = (keyFile?: string) => ({
      registry: { dataDir },
      models: [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }],
      encryption: keyFile ? { keyFile } : {},
      pool: { workers: 1, warmupRuns: 0 },
    });
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
      assert.match(
        again.stdout,
        /1 already done/,
        'rotation is idempotent, so an interrupted one is resumed by running it again',
      );
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

  test('rotation with the server up: the old key as a previous key reads old files, new files take the new key', async () => {
    const dataDir = tempDataDir();
    const [k1, k2] = [1, 2].map((i) => join(dataDir, '..', `prev-k${i}-${process.pid}`)) as [string, string];
    writeFileSync(k1, generateKey().toString('hex'));
    writeFileSync(k2, generateKey().toString('hex'));
    const bus = readFileSync(imagePath('bus.jpg'));
    // Later starts serve what the registry holds: no `models`, whose file would be stored again under the current key.
    const cfg = (encryption: Record<string, unknown>, models: { name: string; path: string }[] = []) => ({
      registry: { dataDir },
      models,
      encryption,
      pool: { workers: 1, warmupRuns: 0 },
    });
    const blobDir = join(dataDir, 'blobs', 'sha256');
    /** The key id each blob's header names (bytes 6..14 after the magic). */
    const keyIds = () =>
      readdirSync(blobDir)
        .map((n) => readFileSync(join(blobDir, n)).subarray(6, 14).toString('hex'))
        .sort();
    try {
      await (
        await startTestServer(cfg({ keyFile: k1 }, [{ name: 'det', path: modelPath('yolo11n_int8_320.onnx') }]))
      ).close();
      const [underK1] = keyIds();
      await assert.rejects(
        startTestServer(cfg({ keyFile: k2, previousKeyFiles: [join(dataDir, 'no-such-key')] })),
        /encryption key file .*no-such-key cannot be read/,
      );

      // Step 1: the new key, with the old one as a previous key: old files are served, new ones use the new key.
      const srv = await startTestServer(cfg({ keyFile: k2, previousKeyFiles: [k1] }));
      try {
        assert.ok(
          (await srv.detect({ image: bus })).detections.some((d) => d.label === 'bus'),
          'a file under the previous key is served',
        );
        const reg = registryClient(srv.address);
        await uploadFile(reg, modelPath('yolox_nano.onnx'), {
          model: 'det',
          labels: readFileSync(cocoLabelsFile, 'utf8').trim().split('\n'),
        });
        reg.close();
        const ids = keyIds();
        assert.equal(ids.length, 2);
        assert.ok(ids.includes(underK1!), 'the old file is untouched');
        const underK2 = ids.find((i) => i !== underK1)!;
        // Step 2: rotate while it serves; the file uploaded meanwhile is already under the new key.
        const r = await runCli(['key', 'rotate', '--data-dir', dataDir, '--from-key-file', k1, '--to-key-file', k2]);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, /1 rewritten/);
        assert.match(r.stdout, /1 already done/);
        assert.deepEqual(keyIds(), [underK2, underK2]);
        assert.ok(
          (await srv.detect({ image: bus })).detections.some((d) => d.label === 'bus'),
          'still serving during and after the rotation',
        );
      } finally {
        await srv.close();
      }
      // Step 3: the previous key can go.
      const after = await startTestServer(cfg({ keyFile: k2 }));
      assert.ok((await after.detect({ image: bus })).detections.some((d) => d.label === 'bus'));
      await after.close();
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(k1, { force: true });
      rmSync(k2, { force: true });
    }
  });
});
