/**
 * Identifies a raster format from its magic bytes only, so that anything else (SVG, PDF, XML, unknown)
 * is refused before any decoder sees it. Pure: no I/O, no decoder.
 */

export type RasterFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'tiff' | 'avif' | 'heif';

/** ISO-BMFF brands of AV1-coded images (AVIF still image / image sequence). */
const AVIF_BRANDS = new Set(['avif', 'avis']);
/** ISO-BMFF brands of HEVC-coded images (HEIC still / sequence, and their extension brands). */
const HEVC_BRANDS = new Set(['heic', 'heix', 'heim', 'heis', 'hevc', 'hevx', 'hevm', 'hevs']);
/** Generic HEIF structural brands that say "image container" without naming the codec. */
const GENERIC_HEIF_BRANDS = new Set(['mif1', 'msf1', 'miaf']);

function startsWith(bytes: Uint8Array, sig: readonly number[], at = 0): boolean {
  if (bytes.length < at + sig.length) return false;
  for (let i = 0; i < sig.length; i++) if (bytes[at + i] !== sig[i]) return false;
  return true;
}

function ascii(bytes: Uint8Array, at: number, len: number): string {
  return String.fromCharCode(...bytes.subarray(at, at + len));
}

/**
 * Reads the leading `ftyp` box of an ISO-BMFF file: major brand first, then the compatible brands.
 * A codec brand (AV1 or HEVC) decides; the major brand wins over the compatible list. A file with only
 * generic HEIF brands is a HEIF container of unknown codec and is reported as 'heif'.
 */
function sniffIsoBmff(bytes: Uint8Array): RasterFormat | null {
  if (bytes.length < 16 || ascii(bytes, 4, 4) !== 'ftyp') return null;
  const boxSize = ((bytes[0] << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3]) >>> 0;
  if (boxSize < 16) return null; // size 0/1 (to-end / 64-bit) never occurs for a real ftyp box
  const end = Math.min(boxSize, bytes.length);
  // Major brand at 8, minor version at 12, compatible brands from 16.
  const brands = [ascii(bytes, 8, 4)];
  for (let at = 16; at + 4 <= end; at += 4) brands.push(ascii(bytes, at, 4));
  let generic = false;
  for (const b of brands) {
    if (AVIF_BRANDS.has(b)) return 'avif';
    if (HEVC_BRANDS.has(b)) return 'heif';
    if (GENERIC_HEIF_BRANDS.has(b)) generic = true;
  }
  return generic ? 'heif' : null; // other ftyp brands (mp4, mov, camera raw ...) are not images we take
}

/** Returns the raster format named by the magic bytes, or null for anything else. */
export function sniffFormat(bytes: Uint8Array): RasterFormat | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 4) === 'WEBP') return 'webp';
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'gif';
  // Classic TIFF (42) and BigTIFF (43), little- and big-endian; libtiff reads both.
  if (startsWith(bytes, [0x49, 0x49, 0x2a, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2a])) return 'tiff';
  if (startsWith(bytes, [0x49, 0x49, 0x2b, 0x00]) || startsWith(bytes, [0x4d, 0x4d, 0x00, 0x2b])) return 'tiff';
  return sniffIsoBmff(bytes);
}
