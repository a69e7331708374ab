/** `sightline batch` sources: folders (recursively), glob patterns and files, as a sorted list of image paths. */
import { readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { glob, isDynamicPattern } from 'tinyglobby';
import { SightlineError } from '../../errors.js';

/** File extensions taken from folders and globs (explicitly named files are taken whatever their name). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif']);
const VIDEO_EXTENSIONS = new Set(['.mp4', '.mov', '.avi', '.mkv', '.webm', '.m4v', '.ts', '.mpg', '.mpeg']);

export const VIDEO_NOTE =
  'video files are not decoded: no maintained video decoder installs from npm without downloading binaries from elsewhere; extract frames first (ffmpeg -i cam.mp4 -vf fps=2 frames/%06d.jpg) and batch the folder';

const isImage = (p: string) => IMAGE_EXTENSIONS.has(extname(p).toLowerCase());

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else if (e.isFile() && isImage(p)) out.push(p);
  }
  return out;
}

/** Every image SRC names, as absolute paths, sorted and without duplicates. */
export async function expandSources(sources: readonly string[]): Promise<string[]> {
  const found = new Set<string>();
  for (const src of sources) {
    if (VIDEO_EXTENSIONS.has(extname(src).toLowerCase()))
      throw new SightlineError('INVALID_INPUT', `${src}: ${VIDEO_NOTE}`);
    const s = await stat(src).catch(() => null);
    if (s?.isDirectory()) for (const p of await walk(resolve(src))) found.add(p);
    else if (s?.isFile()) found.add(resolve(src));
    else if (isDynamicPattern(src))
      for (const p of await glob(src, { absolute: true, onlyFiles: true }))
        if (isImage(p)) found.add(resolve(p));
        else throw new SightlineError('INVALID_INPUT', `${src}: no such file, folder or glob pattern`);
  }
  return [...found].sort();
}
