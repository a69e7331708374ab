/** Shared fixtures for the registry tests: a temp data dir per test and version rows to insert. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import type { NewVersion } from '../../src/registry/index.js';

/** `<repo>/migrations`: this file compiles to `<outDir>/test/registry/helpers.js`. */
export const migrationsDir = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..', 'migrations');

/** A fresh temp directory, removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'sightline-reg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const sha256Of = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** The bytes as an async stream of `chunkSize` pieces, like an upload. */
export async function* chunked(b: Uint8Array, chunkSize = 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.byteLength; i += chunkSize) yield b.subarray(i, Math.min(i + chunkSize, b.byteLength));
}

/** A version row for `model` whose "file" is `content` (the blob is not written). */
export function newVersion(model: string, content: string | Uint8Array, extra: Partial<NewVersion> = {}): NewVersion {
  const bytes = typeof content === 'string' ? Buffer.from(content) : content;
  return {
    model,
    sha256: sha256Of(bytes),
    sizeBytes: bytes.byteLength,
    sourceName: `${model}.onnx`,
    family: 'ultralytics',
    inputWidth: 640,
    inputHeight: 640,
    classNames: ['person', 'bicycle'],
    onnxMetadata: { task: 'detect' },
    ...extra,
  };
}
