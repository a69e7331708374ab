/** Loads a model file from disk into the manager (the registry-less path used by `serve --model`). */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { SightlineError } from '../errors.js';
import type { ExecutionProvider, FamilyName } from '../inference/index.js';
import type { LoadedVersion, ModelManager } from './models.js';

export interface ModelFileSource {
  name: string;
  path: string;
  labels?: string;
  family?: FamilyName;
}

export async function loadModelFile(
  models: ModelManager,
  src: ModelFileSource,
  pool: { intraOpThreads: number; executionProviders: readonly ExecutionProvider[]; warmupRuns: number },
  version = '1',
): Promise<LoadedVersion> {
  const read = async (p: string, what: string) => {
    try {
      return await readFile(p);
    } catch (e) {
      throw new SightlineError('NOT_FOUND', `cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  };
  const bytes = await read(src.path, 'model file');
  const labelsText = src.labels ? (await read(src.labels, 'labels file')).toString('utf8') : undefined;
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return models.load(src.name, version, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), sha256, {
    family: src.family,
    labelsText,
    intraOpThreads: pool.intraOpThreads,
    executionProviders: pool.executionProviders,
    warmupRuns: pool.warmupRuns,
  });
}
