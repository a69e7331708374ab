/**
 * Reads a dataset in the YOLO layout: `<dir>/images/**` and, for each image, `<dir>/labels/<same
 * sub-path>.txt` with `class cx cy w h` lines normalised to the image size. A missing label file is a
 * background image. Class names come from `<dir>/classes.txt` or `<dir>/data.yaml`.
 */
import { readdir, readFile } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { SightlineError } from '../errors.js';
import { parseLabelsFile } from '../inference/families/index.js';
import { IMAGE_EXTENSIONS } from '../inference/index.js';
import type { ImageGroundTruth } from './map.js';

export interface DatasetImage {
  readonly path: string;
  /** null: no label file, a background image with no ground truth. */
  readonly labelPath: string | null;
}

export interface YoloDataset {
  /** Sorted by path, so runs are reproducible. */
  readonly images: readonly DatasetImage[];
  readonly names: string[] | null;
}

const isMissing = (e: unknown): boolean =>
  e instanceof Error && 'code' in e && (e.code === 'ENOENT' || e.code === 'ENOTDIR');

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if (isMissing(e)) return null;
    throw e;
  }
}

/** Names from data.yaml: `names:` as a list or as an `{id: name}` map with ids 0..n-1. */
function namesFromYaml(text: string, file: string): string[] | null {
  const doc: unknown = parseYaml(text);
  if (typeof doc !== 'object' || doc === null || !('names' in doc)) return null;
  const names = doc.names;
  if (Array.isArray(names)) return names.map((n) => String(n));
  if (typeof names === 'object' && names !== null) {
    const entries = Object.entries(names);
    const out = new Array<string>(entries.length);
    for (const [k, v] of entries) {
      const id = Number(k);
      if (!Number.isInteger(id) || id < 0 || id >= entries.length) {
        throw new SightlineError('INVALID_INPUT', `${file}: names must use ids 0..${entries.length - 1}, found '${k}'`);
      }
      out[id] = String(v);
    }
    return out;
  }
  throw new SightlineError('INVALID_INPUT', `${file}: names must be a list or a map of id to name`);
}

/** The files that may name a dataset's classes, in the order they are read: the first one present wins. */
export const NAMES_FILES = ['classes.txt', 'data.yaml', 'data.yml'] as const;

/**
 * Class names from the first of NAMES_FILES that `read` finds: classes.txt (one name per line, trailing
 * blank lines ignored), then data.yaml / data.yml.
 */
export async function readYoloNames(
  read: (file: (typeof NAMES_FILES)[number]) => Promise<string | null>,
): Promise<string[] | null> {
  for (const name of NAMES_FILES) {
    const text = await read(name);
    if (text !== null) return name === 'classes.txt' ? parseLabelsFile(text) : namesFromYaml(text, name);
  }
  return null;
}

/**
 * The YOLO layout over relative, '/'-separated paths: every image under images/ with the label file
 * at the same sub-path under labels/ (with .txt), or null when there is none. Sorted by path.
 */
export function pairYoloFiles(paths: Iterable<string>): DatasetImage[] {
  const all = new Set(paths);
  return [...all]
    .filter((p) => p.startsWith('images/') && IMAGE_EXTENSIONS.has(extname(p).toLowerCase()))
    .sort()
    .map((path) => {
      const rel = path.slice('images/'.length);
      const label = `labels/${rel.slice(0, rel.length - extname(rel).length)}.txt`;
      return { path, labelPath: all.has(label) ? label : null };
    });
}

/** Lists a YOLO dataset's images with their label files (which need not exist) and class names. */
export async function loadYoloDataset(dir: string): Promise<YoloDataset> {
  const list = async (sub: string, required: boolean): Promise<string[]> => {
    try {
      return (await readdir(join(dir, sub), { recursive: true })).map((p) => `${sub}/${p.split(sep).join('/')}`);
    } catch (e) {
      if (!isMissing(e)) throw e;
      if (required)
        throw new SightlineError('INVALID_INPUT', `not a YOLO dataset: ${join(dir, sub)} does not exist`, { dir });
      return [];
    }
  };
  const paired = pairYoloFiles([...(await list('images', true)), ...(await list('labels', false))]);
  const images = paired.map((i): DatasetImage => ({
    path: join(dir, i.path),
    labelPath: i.labelPath === null ? null : join(dir, i.labelPath),
  }));
  return { images, names: await readYoloNames((f) => readIfExists(join(dir, f))) };
}

/**
 * Parses YOLO txt labels into pixel xyxy boxes. Lines are `class cx cy w h` (normalised); a line with
 * more numbers is a segmentation polygon `class x1 y1 x2 y2 ...`, reduced to its bounding box as
 * Ultralytics does. Blank lines are skipped; anything else malformed is refused with its line number.
 */
export function readYoloLabels(text: string, imgW: number, imgH: number): ImageGroundTruth {
  const lines = text.split(/\r?\n/);
  const boxes = new Float32Array(lines.length * 4);
  const classes = new Int32Array(lines.length);
  let n = 0;
  for (let ln = 0; ln < lines.length; ln++) {
    const line = lines[ln].trim();
    if (line === '') continue;
    const parts = line.split(/\s+/);
    const nums = parts.map(Number);
    const cls = nums[0];
    const coords = nums.length - 1;
    if (
      !Number.isInteger(cls) ||
      cls < 0 ||
      coords < 4 ||
      (coords > 4 && coords % 2 !== 0) ||
      nums.some((v) => !Number.isFinite(v))
    ) {
      throw new SightlineError('INVALID_INPUT', `label line ${ln + 1} is not 'class cx cy w h': ${line.slice(0, 80)}`, {
        line: ln + 1,
      });
    }
    let x1: number;
    let y1: number;
    let x2: number;
    let y2: number;
    if (coords === 4) {
      const [, cx, cy, w, h] = nums;
      x1 = cx - w / 2;
      y1 = cy - h / 2;
      x2 = cx + w / 2;
      y2 = cy + h / 2;
    } else {
      x1 = y1 = Infinity;
      x2 = y2 = -Infinity;
      for (let k = 1; k < nums.length; k += 2) {
        x1 = Math.min(x1, nums[k]);
        x2 = Math.max(x2, nums[k]);
        y1 = Math.min(y1, nums[k + 1]);
        y2 = Math.max(y2, nums[k + 1]);
      }
    }
    const b = n * 4;
    boxes[b] = x1 * imgW;
    boxes[b + 1] = y1 * imgH;
    boxes[b + 2] = x2 * imgW;
    boxes[b + 3] = y2 * imgH;
    classes[n++] = cls;
  }
  return { boxes: boxes.subarray(0, n * 4), classes: classes.subarray(0, n), count: n };
}
