/**
 * The images the benchmark sends, as users send them: the two sample photos, a 1920x1080 frame and a
 * 4032x3024 phone photo (both made here from the shared photos, baseline JPEG, 4:2:0, quality 90), and
 * libjpeg-turbo's own decode time of each (`tjbench`, one thread: the decoder's floor).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';

export interface BenchImage {
  name: string;
  path: string;
  bytes: Buffer;
  width: number;
  height: number;
  /** libjpeg-turbo's full decode of this file on one thread, ms (tjbench), or null without tjbench. */
  floorMs: number | null;
}

/** ms per full decode (tjbench's frame rate, one thread, no output written), or null when tjbench is missing. */
export function tjbenchMs(path: string, seconds: number): number | null {
  const r = spawnSync('tjbench', [path, '-benchtime', String(seconds), '-warmup', '1', '-nowrite'], {
    encoding: 'utf8',
  });
  if (r.error || r.status !== 0) return null;
  const fps = /Decompress\s+-->\s+Frame rate:\s+([\d.]+)/.exec(r.stdout)?.[1];
  return fps ? 1000 / Number(fps) : null;
}

export async function benchImages(shared: string, dir: string, floorSeconds: number): Promise<BenchImage[]> {
  const bus = join(shared, 'images', 'bus.jpg');
  const zidane = join(shared, 'images', 'zidane.jpg');
  const hd = join(dir, 'frame-1920x1080.jpg');
  const phone = join(dir, 'photo-4032x3024.jpg');
  writeFileSync(
    hd,
    await sharp(zidane)
      .resize(1920, 1080, { fit: 'fill' })
      .jpeg({ quality: 90, chromaSubsampling: '4:2:0' })
      .toBuffer(),
  );
  // bus.jpg turned on its side and enlarged: a 4:3 landscape photo of a phone's size.
  writeFileSync(
    phone,
    await sharp(bus)
      .rotate(90)
      .resize(4032, 3024, { fit: 'fill' })
      .jpeg({ quality: 90, chromaSubsampling: '4:2:0' })
      .toBuffer(),
  );
  const out: BenchImage[] = [];
  for (const [name, path] of [
    ['bus.jpg', bus],
    ['zidane.jpg', zidane],
    ['1920x1080', hd],
    ['4032x3024', phone],
  ] as const) {
    const bytes = readFileSync(path);
    const m = await sharp(bytes).metadata();
    out.push({ name, path, bytes, width: m.width, height: m.height, floorMs: tjbenchMs(path, floorSeconds) });
  }
  return out;
}
