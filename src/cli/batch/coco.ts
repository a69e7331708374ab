/**
 * Batch results as one COCO JSON document (the object-detection format of cocodataset.org): images,
 * categories and annotations with their score, bbox [x, y, w, h] in pixels. It loads as a dataset and
 * as detection results alike (pycocotools' loadRes takes its annotations).
 *
 * Made to evaluate against the official COCO annotations where it can:
 * - category ids: when every detection's label is the COCO-80 name of its class index (a COCO-trained
 *   model), the official COCO ids (1-90 with gaps) and all 80 categories; otherwise the model's class
 *   index, and the categories detected;
 * - image ids: when every file is named by a number (000000000139.jpg, as COCO's are), that number;
 *   otherwise 1, 2, 3... in path order;
 * - file_name: the path below the folder common to all images (COCO's bare names for one folder).
 */
import { existsSync, openSync, readSync, closeSync } from 'node:fs';
import { basename, extname, relative, sep } from 'node:path';
import { SightlineError } from '../../errors.js';
import { COCO80_NAMES, COCO80_TO_91 } from '../../eval/index.js';
import type { ResultLine } from './journal.js';
import { commonDir } from './sources.js';

export interface CocoDocument {
  info: { description: string; date_created: string };
  images: { id: number; file_name: string; width: number; height: number }[];
  categories: { id: number; name: string }[];
  annotations: {
    id: number;
    image_id: number;
    category_id: number;
    bbox: [number, number, number, number];
    area: number;
    score: number;
    iscrowd: 0;
  }[];
}

/** Every document this writes starts so (JSON.stringify keeps the key order). */
const DESCRIPTION = 'sightline batch';
const DOC_START = `{"info":{"description":"${DESCRIPTION}`;

/** Whether the detections are those of a COCO-80 model: each label is the COCO name of its class index. */
export const isCoco80 = (lines: readonly ResultLine[]): boolean =>
  lines.some((l) => l.detections.length) &&
  lines.every((l) => l.detections.every((d) => COCO80_NAMES[d.classId] === d.label));

/** COCO's own image ids when every file is named by a distinct positive number, else null. */
function numericIds(lines: readonly ResultLine[]): number[] | null {
  const ids = lines.map((l) => {
    const stem = basename(l.image, extname(l.image));
    return /^\d{1,15}$/.test(stem) ? Number(stem) : 0;
  });
  return ids.every((id) => id > 0) && new Set(ids).size === ids.length ? ids : null;
}

/** `sources`: what the run was over, for the description. */
export function toCoco(lines: readonly ResultLine[], sources: string): CocoDocument {
  const coco = isCoco80(lines);
  const categories = new Map<number, string>(coco ? COCO80_NAMES.map((name, i) => [COCO80_TO_91[i]!, name]) : []);
  const sorted = [...lines].sort((a, b) => (a.image < b.image ? -1 : a.image > b.image ? 1 : 0));
  const base = commonDir(sorted.map((l) => l.image));
  const ids = numericIds(sorted);
  const doc: CocoDocument = {
    info: { description: `${DESCRIPTION} over ${sources}`, date_created: new Date().toISOString() },
    images: [],
    categories: [],
    annotations: [],
  };
  sorted.forEach((l, i) => {
    // Ids start at 1: COCO tools read 0 as "no match".
    const imageId = ids ? ids[i]! : i + 1;
    doc.images.push({
      id: imageId,
      file_name: relative(base, l.image).split(sep).join('/'),
      width: l.imageWidth,
      height: l.imageHeight,
    });
    for (const d of l.detections) {
      const categoryId = coco ? COCO80_TO_91[d.classId]! : d.classId;
      categories.set(categoryId, d.label);
      const w = d.xMax - d.xMin;
      const h = d.yMax - d.yMin;
      doc.annotations.push({
        id: doc.annotations.length + 1,
        image_id: imageId,
        category_id: categoryId,
        bbox: [d.xMin, d.yMin, w, h],
        area: w * h,
        score: d.confidence,
        iscrowd: 0,
      });
    }
  });
  doc.categories = [...categories].sort((a, b) => a[0] - b[0]).map(([id, name]) => ({ id, name }));
  return doc;
}

/** Refuses to overwrite `path` (named `what`) unless it is a COCO document this wrote. */
export function assertOwnCoco(path: string, what: string): void {
  if (!existsSync(path)) return;
  const fd = openSync(path, 'r');
  const head = Buffer.alloc(DOC_START.length);
  const n = readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  if (n && head.subarray(0, n).toString() !== DOC_START)
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} exists and is not a COCO document of sightline batch: give another --out, or move that file away`,
    );
}
