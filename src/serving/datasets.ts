/**
 * Golden datasets in the registry: a YOLO-format folder (as `sightline validate` reads it) uploaded
 * file by file, each file a content-addressed blob in the registry's blob store (verified on every
 * read, encrypted at rest when a key is configured, shared with identical files of other versions),
 * recorded as a named, numbered version whose hash is the manifest's (every path with its sha256).
 * Uploading the same content again returns the existing version.
 */
import { createHash } from 'node:crypto';
import { extname } from 'node:path';
import { SightlineError } from '../errors.js';
import { assertIdentifier } from '../identifiers.js';
import { NAMES_FILES, pairYoloFiles, readYoloLabels, readYoloNames } from '../eval/index.js';
import { IMAGE_EXTENSIONS } from '../inference/index.js';
import type { BlobStore, DatasetFile, DatasetRecord, EvidenceStore } from '../registry/index.js';

/** One message of an upload after its metadata: a file starts, or a chunk of the current file. */
export type DatasetUploadItem =
  { readonly kind: 'file'; readonly path: string } | { readonly kind: 'data'; readonly bytes: Uint8Array };

export interface DatasetLimits {
  /** All files of one dataset version together. */
  maxDatasetBytes: number;
  maxDatasetFiles: number;
  /** One file (an image is never larger than a Detect request may be). */
  maxFileBytes: number;
}

const MAX_PATH = 1024;

/** A relative path inside the YOLO layout, or INVALID_INPUT saying why not. */
function checkPath(path: string): void {
  const bad = (why: string) =>
    new SightlineError('INVALID_INPUT', `dataset file "${path.slice(0, 200)}": ${why}`, { field: 'path' });
  if (path.length === 0 || path.length > MAX_PATH) throw bad(`paths are 1-${MAX_PATH} characters`);
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('\\') || p.includes('\0')))
    throw bad("a relative path of '/'-separated names, without '.', '..' or '\\'");
  if ((NAMES_FILES as readonly string[]).includes(path)) return;
  if (parts[0] === 'images' && parts.length > 1) {
    if (!IMAGE_EXTENSIONS.has(extname(path).toLowerCase()))
      throw bad(`not an image: the formats are ${[...IMAGE_EXTENSIONS].join(', ')}`);
    return;
  }
  if (parts[0] === 'labels' && parts.length > 1 && path.endsWith('.txt')) return;
  throw bad(`not part of a YOLO dataset: images/…, labels/….txt, ${NAMES_FILES.join(', ')}`);
}

export class DatasetLibrary {
  /** One upload at a time: a failed upload removes the blobs only it stored. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly blobs: BlobStore,
    private readonly evidence: EvidenceStore,
    /** Whether a version or another dataset uses the blob (RegistryStore.isBlobReferenced). */
    private readonly isReferenced: (sha256: string) => boolean,
    private readonly limits: DatasetLimits,
  ) {}

  upload(
    meta: { name: string; notes: string; actor: string },
    items: AsyncIterable<DatasetUploadItem>,
  ): Promise<{ dataset: DatasetRecord; created: boolean }> {
    const run = this.tail.then(() => this.store(meta, items));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async store(
    meta: { name: string; notes: string; actor: string },
    items: AsyncIterable<DatasetUploadItem>,
  ): Promise<{ dataset: DatasetRecord; created: boolean }> {
    assertIdentifier(meta.name, 'dataset name');
    const files = new Map<string, DatasetFile>();
    const fresh: string[] = [];
    try {
      await this.receive(items, files, fresh);
      const described = await this.describe(files);
      const manifest = createHash('sha256');
      for (const f of [...files.values()].sort((a, b) => (a.path < b.path ? -1 : 1)))
        manifest.update(`${f.path}\0${f.sha256}\n`);
      const sha256 = manifest.digest('hex');
      const known = this.evidence.findDatasetBySha(meta.name, sha256);
      if (known) return { dataset: known, created: false };
      const dataset = this.evidence.insertDataset({
        name: meta.name,
        sha256,
        createdBy: meta.actor,
        notes: meta.notes,
        ...described,
        files: [...files.values()],
      });
      return { dataset, created: true };
    } catch (e) {
      for (const sha of fresh) if (!this.isReferenced(sha)) await this.blobs.remove(sha).catch(() => undefined);
      throw e;
    }
  }

  /** Streams every file into the blob store, within the limits; `fresh`: blobs that were not there before. */
  private async receive(
    items: AsyncIterable<DatasetUploadItem>,
    files: Map<string, DatasetFile>,
    fresh: string[],
  ): Promise<void> {
    const { maxDatasetBytes, maxDatasetFiles, maxFileBytes } = this.limits;
    let total = 0;
    const it = items[Symbol.asyncIterator]();
    let next = await it.next();
    while (!next.done) {
      const item = next.value;
      if (item.kind !== 'file')
        throw new SightlineError('INVALID_INPUT', 'dataset data came before the path of its file');
      checkPath(item.path);
      if (files.has(item.path)) throw new SightlineError('INVALID_INPUT', `dataset file "${item.path}" was sent twice`);
      if (files.size >= maxDatasetFiles)
        throw new SightlineError(
          'INVALID_INPUT',
          `the dataset has more than ${maxDatasetFiles} files (registry.maxDatasetFiles)`,
        );
      let size = 0;
      async function* body(): AsyncIterable<Uint8Array> {
        for (;;) {
          next = await it.next();
          if (next.done || next.value.kind === 'file') return;
          size += next.value.bytes.byteLength;
          if (total + size > maxDatasetBytes)
            throw new SightlineError(
              'INVALID_INPUT',
              `the dataset is larger than ${maxDatasetBytes} bytes (registry.maxDatasetBytes)`,
            );
          yield next.value.bytes;
        }
      }
      const put = await this.putNew(body(), Math.min(maxFileBytes, maxDatasetBytes - total), item.path, fresh);
      total += put.size;
      files.set(item.path, { path: item.path, sha256: put.sha256, sizeBytes: put.size });
    }
  }

  private async putNew(
    chunks: AsyncIterable<Uint8Array>,
    maxBytes: number,
    path: string,
    fresh: string[],
  ): Promise<{ sha256: string; size: number }> {
    let put: { sha256: string; size: number };
    try {
      put = await this.blobs.putStream(chunks, { maxBytes });
    } catch (e) {
      if (e instanceof SightlineError && e.code === 'INVALID_INPUT')
        throw new SightlineError('INVALID_INPUT', `dataset file "${path}": ${e.message}`, e.fields);
      throw e;
    }
    if (!this.isReferenced(put.sha256) && !fresh.includes(put.sha256)) fresh.push(put.sha256);
    return put;
  }

  /** Checks the layout and every label file; counts images and boxes; reads the class names. */
  private async describe(
    files: ReadonlyMap<string, DatasetFile>,
  ): Promise<{ images: number; boxes: number; classNames: string[] }> {
    const text = async (path: string) => (await this.blobs.read(files.get(path)!.sha256)).toString('utf8');
    const images = pairYoloFiles(files.keys());
    if (images.length === 0) throw new SightlineError('INVALID_INPUT', 'the dataset has no images (images/…)');
    const labelled = new Set(images.map((i) => i.labelPath));
    const orphan = [...files.keys()].find((p) => p.startsWith('labels/') && !labelled.has(p));
    if (orphan)
      throw new SightlineError(
        'INVALID_INPUT',
        `dataset file "${orphan}" labels no image (images/ holds none at the same path)`,
      );
    const names = (await readYoloNames((f) => (files.has(f) ? text(f) : Promise.resolve(null)))) ?? [];
    let boxes = 0;
    for (const i of images) {
      if (i.labelPath === null) continue;
      let gt: ReturnType<typeof readYoloLabels>;
      try {
        gt = readYoloLabels(await text(i.labelPath), 1, 1);
      } catch (e) {
        throw new SightlineError('INVALID_INPUT', `dataset file "${i.labelPath}": ${(e as Error).message}`);
      }
      const cls = gt.classes.find((c) => names.length > 0 && c >= names.length);
      if (cls !== undefined)
        throw new SightlineError(
          'INVALID_INPUT',
          `dataset file "${i.labelPath}": class ${cls} is not among the ${names.length} class names`,
        );
      boxes += gt.count;
    }
    return { images: images.length, boxes, classNames: names };
  }
}
