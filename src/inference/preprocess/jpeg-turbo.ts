/**
 * libjpeg-turbo's own decoder (the `@julusian/jpeg-turbo` binding: prebuilt N-API binaries with
 * libjpeg-turbo bundled, for every platform we ship). It decodes a photo in the time `tjbench` reports
 * for it, where sharp/libvips takes two to three times as long (pipeline set-up, fresh buffers and page
 * faults on every image; docs/BENCHMARKS.md). Synchronous: it runs in an inference worker, whose thread
 * is there to be busy. The output buffer is reused from one image to the next.
 */
import { createRequire } from 'node:module';
import { SightlineError } from '../../errors.js';
import { decoderReason, type ImageSource } from './source.js';
import type { RgbImage } from './resample.js';

interface JpegTurbo {
  FORMAT_RGB: number;
  decompressSync(
    image: Buffer,
    out: Buffer,
    options: { format: number },
  ): { data: Buffer; width: number; height: number };
}
const turbo = createRequire(import.meta.url)('@julusian/jpeg-turbo') as JpegTurbo;

/**
 * Decoded images up to this size reuse one buffer per thread (16 MP, so a 12 MP phone photo's 36 MB);
 * larger ones get a buffer of their own, so a rare huge image does not pin its memory for the life of
 * the worker. A fresh buffer is expensive: its pages fault in as the decoder writes them (a 4032x3024
 * photo decoded in 29 ms into a reused buffer and in 136 ms into a new one, on a VM here).
 */
const RETAINED_BYTES = 16_000_000 * 3;

/** Marks a JPEG libjpeg-turbo refused: the caller decodes it again with sharp, which diagnoses it. */
export const TURBO_REFUSED = 'libjpeg-turbo-refused';

export class JpegDecoder {
  private buf = Buffer.alloc(0);

  /** Decodes a 'jpeg' source to RGB at its stored size; 'rgb' sources pass through. */
  decode(source: ImageSource): RgbImage {
    if (source.kind === 'rgb') return source;
    const need = source.width * source.height * 3;
    let out = this.buf;
    if (out.length < need) {
      out = Buffer.allocUnsafeSlow(need);
      if (need <= RETAINED_BYTES) this.buf = out;
    }
    const bytes = Buffer.from(source.bytes.buffer, source.bytes.byteOffset, source.bytes.byteLength);
    let r: { width: number; height: number };
    try {
      r = turbo.decompressSync(bytes, out, { format: turbo.FORMAT_RGB });
    } catch (e) {
      // Truncated data, corrupt entropy coding, a header that disagrees with ours: libvips decides
      // what such a file is (some are readable with warnings) and words the refusal.
      throw new SightlineError('INVALID_INPUT', `libjpeg-turbo could not decode the image (${decoderReason(e)})`, {
        fallback: TURBO_REFUSED,
      });
    }
    if (r.width !== source.width || r.height !== source.height) {
      throw new SightlineError(
        'INVALID_INPUT',
        `libjpeg-turbo decoded ${r.width}x${r.height}, the header said ${source.width}x${source.height}`,
        { fallback: TURBO_REFUSED },
      );
    }
    return {
      pixels: out.subarray(0, need),
      width: source.width,
      height: source.height,
      orientation: source.orientation,
    };
  }
}

export const turboRefused = (e: unknown): boolean => e instanceof SightlineError && e.fields.fallback === TURBO_REFUSED;
