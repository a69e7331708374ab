/** `sightline batch` sources: folders (recursively), glob patterns and files, as a sorted list of image paths. */
import { readdir, stat } from 'node:fs/promises';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { SightlineError } from '../../errors.js';
import { IMAGE_EXTENSIONS } from '../../inference/index.js';

const VIDEO_EXTENSIONS = new Set(['.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.ts', '.mpg', '.mpeg']);

export const VIDEO_NOTE =
  'video files are not decoded: no maintained video decoder installs from npm without downloading binaries from elsewhere; ' +
  'extract frames first (ffmpeg -i cam.mp4 -vf fps=2 frames/%06d.jpg) and batch the folder';

/** Taken from folders and globs (explicitly named files are taken whatever their name). */
const isImage = (p: string) => IMAGE_EXTENSIONS.has(extname(p).toLowerCase());

export interface Sources {
  /** Absolute paths, sorted, without duplicates. */
  images: string[];
  /** Files found in folders or matched by globs that are not images by their extension (left out). */
  skipped: number;
}

/** Images below `dir` (into `images`); returns how many other files it holds. */
async function walk(dir: string, images: Set<string>): Promise<number> {
  let skipped = 0;
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) skipped += await walk(p, images);
    else if (e.isFile() && isImage(p)) images.add(p);
    else if (e.isFile()) skipped++;
  }
  return skipped;
}

/** Every image SRC names. A path that does not exist, or a glob that matches no file, is a mistake in the command. */
export async function expandSources(sources: readonly string[]): Promise<Sources> {
  const found = new Set<string>();
  let skipped = 0;
  for (const src of sources) {
    if (VIDEO_EXTENSIONS.has(extname(src).toLowerCase()))
      throw new SightlineError('INVALID_INPUT', `${src}: ${VIDEO_NOTE}`);
    const s = await stat(src).catch((e: NodeJS.ErrnoException) => e);
    if (s instanceof Error && s.code !== 'ENOENT' && s.code !== 'ENOTDIR')
      throw new SightlineError('INVALID_INPUT', `${src}: cannot read it (${s.code ?? s.message})`);
    if (!(s instanceof Error) && s.isDirectory()) skipped += await walk(resolve(src), found);
    else if (!(s instanceof Error)) found.add(resolve(src));
    else if (isDynamicPattern(src)) {
      const matched = await glob(src, { absolute: true, onlyFiles: true });
      if (!matched.length)
        throw new SightlineError(
          'INVALID_INPUT',
          `${src}: the glob pattern matches no file: check the pattern and its folder`,
        );
      for (const p of matched)
        if (isImage(p)) found.add(resolve(p));
        else skipped++;
    } else
      throw new SightlineError('INVALID_INPUT', `${src}: no such file or folder (nor a glob pattern): check the path`);
  }
  return { images: [...found].sort(), skipped };
}

/** The longest folder all `paths` lie in (annotated copies and COCO file names keep their paths below it). */
export function commonDir(paths: readonly string[]): string {
  if (paths.length === 0) return process.cwd();
  let base = dirname(paths[0]!);
  for (const p of paths) while (!(p + sep).startsWith(base.endsWith(sep) ? base : base + sep)) base = dirname(base);
  return base;
}
