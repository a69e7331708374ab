/**
 * Child process for crash.test.ts: hammers a registry (uploads, promotes, rollbacks, deletes) until the
 * parent SIGKILLs it. Usage: node crash-child.js <dataDir> <migrationsDir>. Prints "ready" once open.
 * Run with no arguments (a test runner picking it up) it does nothing.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { BlobStore, RegistryStore } from '../../src/registry/index.js';

async function* chunks(b: Buffer): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.byteLength; i += 16_384) yield b.subarray(i, i + 16_384);
}

async function main(dataDir: string, migrationsDir: string): Promise<void> {
  const store = RegistryStore.open(dataDir, migrationsDir);
  const blobs = new BlobStore(dataDir);
  process.stdout.write('ready\n');
  const models = ['alpha', 'beta'];
  let shared: Buffer | null = null;
  for (;;) {
    const model = models[randomInt(models.length)];
    // Sometimes the same bytes under both models, so blobs are shared and deletes must keep them.
    const bytes: Buffer = shared && randomInt(4) === 0 ? shared : randomBytes(randomInt(1, 200_000));
    shared = bytes;
    const { sha256, size } = await blobs.putStream(chunks(bytes), { maxBytes: 1 << 20 });
    if (!store.findVersionBySha(model, sha256)) {
      store.insertVersion({
        model,
        sha256,
        sizeBytes: size,
        family: 'ultralytics',
        inputWidth: 640,
        inputHeight: 640,
        classNames: ['x'],
        onnxMetadata: {},
      });
    }
    const m = store.getModel(model);
    if (!m) throw new Error('model vanished');
    const versions = store.listVersions(model);
    switch (randomInt(4)) {
      case 0:
      case 1:
        store.promote(model, versions[versions.length - 1].version, 'crash-child', 'newest');
        break;
      case 2:
        if (m.rollbackVersion !== null) store.rollback(model, 'crash-child', 'oops');
        break;
      default: {
        const victim = versions.find((v) => v.version !== m.activeVersion && v.version !== m.rollbackVersion);
        if (victim) {
          const r = store.deleteVersion(model, victim.version, 'crash-child', 'cleanup');
          if (!r.blobStillReferenced && !store.isBlobReferenced(r.sha256)) await blobs.remove(r.sha256);
        }
      }
    }
  }
}

const [dataDir, migrationsDir] = process.argv.slice(2);
if (dataDir && migrationsDir) {
  main(dataDir, migrationsDir).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
