/**
 * libjpeg-turbo's own decoder, in the inference worker. It decodes a photo in the time `tjbench`
 * reports for it, where sharp/libvips takes two to three times as long (pipeline set-up, fresh buffers
 * and page faults on every image; docs/BENCHMARKS.md). Synchronous: it runs in an inference worker,
 * whose thread is there to be busy. The output buffer is reused from one image to the next.
 *
 * Two ways in, to the same library. `@julusian/jpeg-turbo` (prebuilt N-API binaries with libjpeg-turbo
 * 3.1 bundled, for every platform we ship) loads it; on Linux its prebuild links a shared
 * libturbojpeg.so.0, which we also call directly through koffi (a maintained FFI with prebuilt binaries)
 * for what the binding does not expose: DCT-domain scaling (decode at 1/2, 1/4 or 1/8 of the size in the
 * IDCT, less work than decoding every pixel and shrinking afterwards), a cap on progressive scans and
 * a pixel cap inside the decoder, and the accurate IDCT. Where that library is not a shared object
 * (macOS, Windows builds link it statically), the binding decodes at full size with its fast IDCT, and
 * scaling is off.
 */
import { createRequire } from 'node:module';
import { SightlineError } from '../../errors.js';
import { decoderReason, type ImageSource } from './source.js';
import type { RgbImage } from './resample.js';

const require = createRequire(import.meta.url);

interface JpegTurboBinding {
  FORMAT_RGB: number;
  decompressSync(
    image: Buffer,
    out: Buffer,
    options: { format: number },
  ): { data: Buffer; width: number; height: number };
}
// Loading the binding also loads its libturbojpeg.so.0 where the prebuild ships one (Linux).
const binding = require('@julusian/jpeg-turbo') as JpegTurboBinding;

/**
 * Decoded images up to this size reuse one buffer per thread (16 MP, so a 12 MP phone photo's 36 MB);
 * larger ones get a buffer of their own, so a rare huge image does not pin its memory for the life of
 * the worker. A fresh buffer is expensive: its pages fault in as the decoder writes them (a 4032x3024
 * photo decoded in 29 ms into a reused buffer and in 136 ms into a new one, on a VM here).
 */
const RETAINED_BYTES = 16_000_000 * 3;

/**
 * Progressive JPEGs may carry any number of scans, each a pass over the whole image: a small file with
 * thousands of them is a known way to burn a decoder's CPU. Real encoders write about 10.
 */
export const MAX_PROGRESSIVE_SCANS = 500;

/** Marks a JPEG libjpeg-turbo refused: the caller decodes it again with sharp, which diagnoses it. */
export const TURBO_REFUSED = 'libjpeg-turbo-refused';

/** What libjpeg-turbo can decode a JPEG to: 1/denominator of its size, per side. */
export type DctDenominator = 1 | 2 | 4 | 8;

/** The decoder entry points we use, whichever way they are reached. */
interface TurboCalls {
  /** Whether `denom` other than 1 is honoured. */
  readonly scales: boolean;
  /** Decodes to RGB into `out` at 1/denom; throws the decoder's own message on failure. */
  decode(jpeg: Buffer, out: Buffer, denom: DctDenominator): { width: number; height: number };
}

/** TurboJPEG 3 parameters and constants (turbojpeg.h; an ABI, stable across 3.x). */
const TJINIT_DECOMPRESS = 1;
const TJPARAM = { JPEGWIDTH: 5, JPEGHEIGHT: 6, FASTDCT: 10, SCANLIMIT: 13 } as const;
const TJPF_RGB = 0;

/** The shared library, through koffi, when this platform's prebuild has one; null otherwise. */
function openShared(): ((maxPixels: number) => TurboCalls) | null {
  if (process.platform !== 'linux') return null;
  let lib: ReturnType<typeof import('koffi').load>;
  let koffi: typeof import('koffi');
  try {
    koffi = require('koffi') as typeof import('koffi');
    // By soname: the dynamic loader returns the copy the binding already loaded (same version, same
    // build), not whatever the system may have installed.
    lib = koffi.load('libturbojpeg.so.0');
  } catch {
    return null;
  }
  try {
    // Declared by name for the signatures below (tjscalingfactor, passed by value).
    koffi.struct('sightline_tjscalingfactor', { num: 'int', denom: 'int' });
    const init = lib.func('void *tj3Init(int initType)');
    const set = lib.func('int tj3Set(void *handle, int param, int value)');
    const get = lib.func('int tj3Get(void *handle, int param)');
    const header = lib.func('int tj3DecompressHeader(void *handle, const uint8_t *jpeg, size_t size)');
    const setScaling = lib.func('int tj3SetScalingFactor(void *handle, sightline_tjscalingfactor factor)');
    const decompress = lib.func(
      'int tj3Decompress8(void *handle, const uint8_t *jpeg, size_t size, uint8_t *dst, int pitch, int format)',
    );
    const errorText = lib.func('const char *tj3GetErrorStr(void *handle)');
    return (maxPixels) => {
      const h: unknown = init(TJINIT_DECOMPRESS);
      if (!h) throw new Error('tj3Init failed');
      // The accurate integer IDCT, as OpenCV's imread (the models' training loader) and tjbench's
      // floor use; the binding's "fast" one costs the same here and scored no better on coco128.
      set(h, TJPARAM.FASTDCT, 0);
      set(h, TJPARAM.SCANLIMIT, MAX_PROGRESSIVE_SCANS);
      const fail = (): never => {
        throw new Error(String(errorText(h)));
      };
      return {
        scales: true,
        decode(jpeg, out, denom) {
          if (header(h, jpeg, jpeg.length) !== 0) fail();
          const width = get(h, TJPARAM.JPEGWIDTH) as number;
          const height = get(h, TJPARAM.JPEGHEIGHT) as number;
          // The pixel limit was checked from our own header read; the decoder's header must agree.
          if (width * height > maxPixels) throw new Error(`decoder read ${width}x${height}, over the pixel limit`);
          if (setScaling(h, { num: 1, denom }) !== 0) fail();
          const w = Math.ceil(width / denom);
          const ht = Math.ceil(height / denom);
          if (out.length < w * ht * 3) throw new RangeError(`output buffer too small for ${w}x${ht}`);
          if (decompress(h, jpeg, jpeg.length, out, 0, TJPF_RGB) !== 0) fail();
          return { width: w, height: ht };
        },
      };
    };
  } catch {
    // An older system library without the TurboJPEG 3 API: use the binding.
    return null;
  }
}

const sharedLibrary = openShared();

const bindingCalls: TurboCalls = {
  scales: false,
  decode(jpeg, out) {
    const r = binding.decompressSync(jpeg, out, { format: binding.FORMAT_RGB });
    return { width: r.width, height: r.height };
  },
};

/** Whether this platform's decoder can scale in the DCT (false: every JPEG is decoded at full size). */
export const DCT_SCALING_AVAILABLE = sharedLibrary !== null;

/**
 * The largest DCT downscale that still leaves at least `resized` pixels on each side, so the resample
 * only ever shrinks: 1 when the model's input is more than half the image. `shown` is the displayed
 * (EXIF-oriented) size; scaling divides both sides alike, so orientation does not change the answer.
 */
export function dctDenominator(
  shown: { width: number; height: number },
  resized: { width: number; height: number },
): DctDenominator {
  for (const d of [8, 4, 2] as const) {
    if (Math.ceil(shown.width / d) >= resized.width && Math.ceil(shown.height / d) >= resized.height) return d;
  }
  return 1;
}

export class JpegDecoder {
  private buf = Buffer.alloc(0);
  private readonly calls: TurboCalls;

  /** `maxPixels`: the decoder refuses a header over this (the request path checked it already). */
  constructor(maxPixels = Number.MAX_SAFE_INTEGER) {
    this.calls = sharedLibrary ? sharedLibrary(maxPixels) : bindingCalls;
  }

  /** Whether decode() honours a denominator above 1. */
  get scales(): boolean {
    return this.calls.scales;
  }

  /**
   * Decodes a 'jpeg' source to RGB at 1/denom of its stored size (full size where the decoder cannot
   * scale); 'rgb' sources pass through.
   */
  decode(source: ImageSource, denom: DctDenominator = 1): RgbImage {
    if (source.kind === 'rgb') return source;
    const d = this.calls.scales ? denom : 1;
    const width = Math.ceil(source.width / d);
    const height = Math.ceil(source.height / d);
    const need = width * height * 3;
    let out = this.buf;
    if (out.length < need) {
      out = Buffer.allocUnsafeSlow(need);
      if (need <= RETAINED_BYTES) this.buf = out;
    }
    const bytes = Buffer.from(source.bytes.buffer, source.bytes.byteOffset, source.bytes.byteLength);
    let r: { width: number; height: number };
    try {
      r = this.calls.decode(bytes, out, d);
    } catch (e) {
      const reason = decoderReason(e);
      if (/scan/i.test(reason) && /limit|more than/i.test(reason)) {
        throw new SightlineError(
          'INVALID_INPUT',
          `progressive JPEG has more than ${MAX_PROGRESSIVE_SCANS} scans (${reason}); re-encode it`,
          { maxScans: MAX_PROGRESSIVE_SCANS },
        );
      }
      // Truncated data, corrupt entropy coding, a header that disagrees with ours: libvips decides
      // what such a file is (some are readable with warnings) and words the refusal.
      throw new SightlineError('INVALID_INPUT', `libjpeg-turbo could not decode the image (${reason})`, {
        fallback: TURBO_REFUSED,
      });
    }
    if (r.width !== width || r.height !== height) {
      throw new SightlineError(
        'INVALID_INPUT',
        `libjpeg-turbo decoded ${r.width}x${r.height}, the header said ${source.width}x${source.height} (1/${d})`,
        { fallback: TURBO_REFUSED },
      );
    }
    return { pixels: out.subarray(0, need), width, height, orientation: source.orientation };
  }
}

export const turboRefused = (e: unknown): boolean => e instanceof SightlineError && e.fields.fallback === TURBO_REFUSED;
