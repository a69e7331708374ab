/**
 * One encoded image through the pool: limits and header here, decoding, preprocessing, inference and
 * NMS in a worker, and the retry with sharp when libjpeg-turbo refuses a JPEG. The one path from bytes
 * to detections, for the server and for `sightline validate` alike.
 */
import {
  withDecoderFallback,
  type Decoder,
  type PrepareLimits,
  type PrepareOptions,
  type RasterFormat,
} from './preprocess/index.js';
import type { InferencePool, Ticket } from './pool/pool.js';
import type { ModelInfo, PixelSample, RunTiming } from './pool/messages.js';
import type { DecodeOptions, Detection, LetterboxGeometry, NmsOptions } from './types.js';

export interface ImageRequest {
  decode: DecodeOptions;
  nms: NmsOptions;
  /** > 0: return the letterboxed image's sampling grid for input features (RunInput.sampleStep). */
  sampleStep?: number;
}

export interface ImageResult {
  detections: Detection[];
  geometry: LetterboxGeometry;
  format: RasterFormat;
  decoder: Decoder;
  /** decodeMs: header checks plus whichever decoder ran; queueMs: waiting for a worker. */
  timing: RunTiming & { queueMs: number };
  /** It ran on the latency session (pool.latencyThreads): the pool was idle when it arrived. */
  latencySession: boolean;
  sample?: PixelSample;
}

export interface ImagePrep {
  limits: PrepareLimits;
  options: PrepareOptions;
}

/**
 * Detects objects in `bytes` with the model loaded under `key`. `ticket` is the caller's place in the
 * admission budget (pool.admit); without one the pool admits the request itself. `background`: run on
 * idle capacity only, dropped rather than queued behind live work (pool.runBackground; no ticket).
 */
export function detectImage(
  pool: InferencePool,
  key: string,
  info: Pick<ModelInfo, 'inputWidth' | 'inputHeight' | 'letterbox'>,
  bytes: Uint8Array,
  prep: ImagePrep,
  req: ImageRequest,
  signal: AbortSignal,
  ticket?: Ticket,
  background?: { maxWaitMs: number },
): Promise<ImageResult> {
  const target = { width: info.inputWidth, height: info.inputHeight, spec: info.letterbox };
  let retry = false;
  return withDecoderFallback(bytes, target, prep.limits, prep.options, async (p) => {
    const input = { source: p.source, geometry: p.geometry, ...req };
    // The sharp retry of an admitted request keeps its admission: it is never refused as over capacity.
    const t = background ? undefined : retry ? pool.admit({ bypassLimit: true }) : ticket;
    retry = true;
    const r = background
      ? await pool.runBackground(key, input, background.maxWaitMs)
      : await pool.run(key, input, signal, t);
    return {
      detections: r.detections,
      geometry: p.geometry,
      format: p.format,
      decoder: p.decoder,
      timing: { ...r.timing, decodeMs: p.decodeMs + r.timing.decodeMs, queueMs: r.queueMs },
      latencySession: r.latencySession,
      ...(r.sample ? { sample: r.sample } : {}),
    };
  });
}
