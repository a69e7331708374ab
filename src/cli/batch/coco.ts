/**
 * Batch results as one COCO JSON document (the object-detection format of cocodataset.org): images,
 * categories (the model's class ids and names) and annotations with their score, bbox [x, y, w, h] in
 * pixels. It loads as a dataset and as detection results alike (pycocotools' loadRes takes its
 * annotations).
 */
import type { ResultLine } from './journal.js';

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

export function toCoco(lines: readonly ResultLine[], description: string): CocoDocument {
  const categories = new Map<number, string>();
  const doc: CocoDocument = {
    info: { description, date_created: new Date().toISOString() },
    images: [],
    categories: [],
    annotations: [],
  };
  // Ids start at 1: COCO tools read 0 as "no match".
  lines.forEach((l, i) => {
    const imageId = i + 1;
    doc.images.push({ id: imageId, file_name: l.image, width: l.imageWidth, height: l.imageHeight });
    for (const d of l.detections) {
      categories.set(d.classId, d.label);
      const w = d.xMax - d.xMin;
      const h = d.yMax - d.yMin;
      doc.annotations.push({
        id: doc.annotations.length + 1,
        image_id: imageId,
        category_id: d.classId,
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
