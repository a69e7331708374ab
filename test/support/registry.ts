/** Registry calls from tests: upload a file in chunks, and promise wrappers. */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { call, registryClient } from '../../src/cli/client.js';
import type { ModelVersion, RegistryClient, UploadMetadata } from '../../src/generated/sightline/v1/registry.js';

export { call, registryClient };

export function uploadFile(
  client: RegistryClient,
  file: string,
  meta: Partial<UploadMetadata> & { model: string },
  chunkBytes = 256 * 1024,
): Promise<ModelVersion> {
  const bytes = readFileSync(file);
  return uploadBytes(client, bytes, { sourceName: basename(file), ...meta }, chunkBytes);
}

export function uploadBytes(
  client: RegistryClient,
  bytes: Buffer,
  meta: Partial<UploadMetadata> & { model: string },
  chunkBytes = 256 * 1024,
): Promise<ModelVersion> {
  return new Promise((resolve, reject) => {
    const s = client.uploadVersion((err, res) => (err ? reject(err) : resolve(res!)));
    s.write({ metadata: { notes: '', expectedSha256: '', labels: [], family: '', sourceName: '', ...meta } });
    for (let o = 0; o < bytes.length; o += chunkBytes) s.write({ data: bytes.subarray(o, o + chunkBytes) });
    s.end();
  });
}
