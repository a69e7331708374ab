/** Draws boxes and labels on an image so a person can check a result. */
import sharp, { type Sharp } from 'sharp';
import type { Detection } from './types.js';

const PALETTE = [
  '#ff3838',
  '#ff9d97',
  '#ff701f',
  '#ffb21d',
  '#cfd231',
  '#48f90a',
  '#92cc17',
  '#3ddb86',
  '#1a9334',
  '#00d4bb',
  '#2c99a8',
  '#00c2ff',
  '#344593',
  '#6473ff',
  '#0018ec',
  '#8438ff',
  '#520085',
  '#cb38ff',
  '#ff95c8',
  '#ff37c7',
];

const esc = (s: string) => s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** Output formats of an annotated image in memory (HTTP answers). */
export type AnnotatedFormat = 'jpeg' | 'png' | 'webp';

/** The image (encoded bytes) with boxes and labels drawn on it, in EXIF-oriented pixels. */
async function drawn(image: Uint8Array, boxes: readonly Detection[]): Promise<Sharp> {
  const base = sharp(image).rotate(); // boxes are in EXIF-oriented pixels
  const { width, height } = await base
    .clone()
    .toBuffer({ resolveWithObject: true })
    .then((r) => r.info);
  const stroke = Math.max(2, Math.round(Math.min(width, height) / 300));
  const font = Math.max(12, Math.round(Math.min(width, height) / 40));
  const parts = boxes.map((b) => {
    const c = PALETTE[b.classId % PALETTE.length]!;
    const text = `${esc(b.label)} ${b.confidence.toFixed(2)}`;
    const ty = b.yMin > font + 4 ? b.yMin - 4 : b.yMin + font + 2;
    return (
      `<rect x="${b.xMin}" y="${b.yMin}" width="${b.xMax - b.xMin}" height="${b.yMax - b.yMin}" fill="none" stroke="${c}" stroke-width="${stroke}"/>` +
      `<rect x="${b.xMin}" y="${ty - font}" width="${text.length * font * 0.6 + 6}" height="${font + 4}" fill="${c}"/>` +
      `<text x="${b.xMin + 3}" y="${ty}" font-family="sans-serif" font-size="${font}" fill="#fff">${text}</text>`
    );
  });
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`,
  );
  return base.composite([{ input: svg, top: 0, left: 0 }]);
}

/** Writes `image` (encoded bytes) with boxes drawn on it to `outPath` (format from the extension). */
export async function annotate(image: Uint8Array, boxes: readonly Detection[], outPath: string): Promise<void> {
  await (await drawn(image, boxes)).toFile(outPath);
}

/** `image` with boxes drawn on it, encoded as `format`. */
export async function annotateToBuffer(
  image: Uint8Array,
  boxes: readonly Detection[],
  format: AnnotatedFormat,
): Promise<Buffer> {
  return (await drawn(image, boxes)).toFormat(format).toBuffer();
}
