/**
 * libjpeg-turbo's own decoder, in the inference worker. It decodes a photo in about the time `tjbench`
 * reports for it, where sharp/libvips takes two to three times as long (pipeline set-up, fresh buffers
 * and page faults on every image; docs/BENCHMARKS.md). Synchronous: it runs in an inference worker,
 * whose thread is there to be busy.
 *
 * Where the platform has libturbojpeg as a shared library (Linux), it is called through koffi (a
 * maintained FFI with prebuilt binaries) with the TurboJPEG API that every libjpeg-turbo since 2.1
 * keeps: that gives DCT-domain scaling (decode at 1/2, 1/4 or 1/8 of the size in the IDCT, less work
 * than decoding every pixel and shrinking afterwards), the accurate IDCT and the progressive-scan limit.
 * The system's copy is preferred when it is installed (the image installs Debian's: distribution
 * security updates, and measured 10 % faster than the bundled build, docs/BENCHMARKS.md); otherwise
 * the copy that `@julusian/jpeg-turbo`'s Linux prebuild ships beside its binding. Elsewhere (macOS and
 * Windows builds link the library statically) that binding decodes at full size, with its fast IDCT.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { SightlineError } from '../../errors.js';
import { MAX_PROGRESSIVE_SCANS } from './jpeg-header.js';
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

/** TurboJPEG API constants (turbojpeg.h, unchanged since 2.1). */
const TJPF_RGB = 0;
const TJFLAG_ACCURATEDCT = 4096;
const TJFLAG_LIMITSCANS = 32768;

/** The shared libturbojpeg through koffi, or null where there is none to load. */
function openShared(): { open: () => TurboCalls; path: string } | null {
  if (process.platform !== 'linux') return null;
  let koffi: typeof import('koffi');
  try {
    koffi = require('koffi') as typeof import('koffi');
  } catch {
    return null;
  }
  // By soname: the system's copy if the dynamic loader knows one; failing that, the binding's (loading
  // the binding loads it, and the loader then hands back that same copy).
  const load = () => koffi.load('libturbojpeg.so.0');
  let lib: ReturnType<typeof load>;
  try {
    lib = load();
  } catch {
    try {
      require('@julusian/jpeg-turbo');
      lib = load();
    } catch {
      return null;
    }
  }
  try {
    const init = lib.func('void *tjInitDecompress()');
    const header = lib.func(
      'int tjDecompressHeader3(void *handle, const uint8_t *jpeg, unsigned long size, ' +
        '_Out_ int *width, _Out_ int *height, _Out_ int *subsamp, _Out_ int *colorspace)',
    );
    const decompress = lib.func(
      'int tjDecompress2(void *handle, const uint8_t *jpeg, unsigned long size, uint8_t *dst, ' +
        'int width, int pitch, int height, int format, int flags)',
    );
    const errorText = lib.func('const char *tjGetErrorStr2(void *handle)');
    const open = (): TurboCalls => {
      const h: unknown = init();
      if (!h) throw new Error('tjInitDecompress failed');
      const fail = (): never => {
        throw new Error(String(errorText(h)));
      };
      const w = [0];
      const ht = [0];
      const ss = [0];
      const cs = [0];
      return {
        scales: true,
        decode(jpeg, out, denom) {
          if (header(h, jpeg, jpeg.length, w, ht, ss, cs) !== 0) fail();
          const width = Math.ceil(w[0]! / denom);
          const height = Math.ceil(ht[0]! / denom);
          if (out.length < width * height * 3) throw new RangeError(`output buffer too small for ${width}x${height}`);
          // The size asked for is exactly 1/denom of the frame, so that is the scale the decoder picks.
          // The accurate integer IDCT, as OpenCV's imread (the models' training loader) and tjbench use.
          const flags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS;
          if (decompress(h, jpeg, jpeg.length, out, width, 0, height, TJPF_RGB, flags) !== 0) fail();
          return { width, height };
        },
      };
    };
    return { open, path: loadedPath() };
  } catch {
    // A library too old for this API (before libjpeg-turbo 2.0): the binding decodes.
    return null;
  }
}

/** Where the loaded libturbojpeg lives, from the process's memory map (for the start-up log). */
function loadedPath(): string {
  try {
    const line = readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .find((l) => /libturbojpeg\.so/.test(l));
    return line?.split(/\s+/).pop() ?? 'libturbojpeg.so.0';
  } catch {
    return 'libturbojpeg.so.0';
  }
}

const shared = openShared();

let bindingCalls: TurboCalls | null = null;
function binding(): TurboCalls {
  if (bindingCalls) return bindingCalls;
  const b = require('@julusian/jpeg-turbo') as JpegTurboBinding;
  bindingCalls = {
    scales: false,
    decode(jpeg, out) {
      const r = b.decompressSync(jpeg, out, { format: b.FORMAT_RGB });
      return { width: r.width, height: r.height };
    },
  };
  return bindingCalls;
}

/** Whether this platform's decoder can scale in the DCT (false: every JPEG is decoded at full size). */
export const DCT_SCALING_AVAILABLE = shared !== null;

/** The decoder in use, for the start-up log: the shared library's path, or the binding. */
export const JPEG_DECODER = shared ? `libturbojpeg (${shared.path})` : '@julusian/jpeg-turbo binding (no DCT scaling)';

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
  private readonly calls: TurboCalls;

  constructor() {
    this.calls = shared ? shared.open() : binding();
  }

  /** Whether decode() honours a denominator above 1. */
  get scales(): boolean {
    return this.calls.scales;
  }

  /** The size decode() yields for a JPEG source at 1/denom (full size where the decoder cannot scale). */
  decodedSize(source: { width: number; height: number }, denom: DctDenominator): { width: number; height: number } {
    const d = this.calls.scales ? denom : 1;
    return { width: Math.ceil(source.width / d), height: Math.ceil(source.height / d) };
  }

  /**
   * Decodes a 'jpeg' source to RGB at 1/denom of its stored size (full size where the decoder cannot
   * scale) into `into` (at least decodedSize's bytes; a fresh buffer without it); 'rgb' sources pass
   * through.
   */
  decode(source: ImageSource, denom: DctDenominator = 1, into?: Buffer): RgbImage {
    if (source.kind === 'rgb') return source;
    const d = this.calls.scales ? denom : 1;
    const { width, height } = this.decodedSize(source, d);
    const need = width * height * 3;
    const out = into && into.length >= need ? into : Buffer.allocUnsafeSlow(need);
    const bytes = Buffer.from(source.bytes.buffer, source.bytes.byteOffset, source.bytes.byteLength);
    let r: { width: number; height: number };
    try {
      r = this.calls.decode(bytes, out, d);
    } catch (e) {
      const reason = decoderReason(e);
      // prepareSource refuses these before they get here; the decoder's own limit is the second line.
      if (/more than \d+ scans/i.test(reason)) {
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
