/**
 * The image as it crosses from the calling thread to an inference worker, and the words of decoder
 * failures. No decoder is imported here: worker threads load this module, and must not load sharp.
 */
import type { Orientation } from './jpeg-header.js';

/**
 * What the worker turns into the model input: a JPEG libjpeg-turbo decodes there, or pixels sharp
 * already decoded in the calling thread (RGB, 3 bytes per pixel, oriented). Plain data.
 */
export type ImageSource =
  | {
      readonly kind: 'jpeg';
      readonly bytes: Uint8Array;
      readonly width: number;
      readonly height: number;
      readonly orientation: Orientation;
      /** The worker may decode at 1/2, 1/4 or 1/8 size in the IDCT when the model input is that small. */
      readonly dctScaling: boolean;
    }
  | {
      readonly kind: 'rgb';
      readonly pixels: Uint8Array;
      readonly width: number;
      readonly height: number;
      readonly orientation: 1;
    };

export type Decoder = 'libjpeg-turbo' | 'sharp';

/** The buffer to hand to postMessage's transfer list (the source owns it: decode.ts made it so). */
export const transferOf = (s: ImageSource): ArrayBuffer =>
  (s.kind === 'jpeg' ? s.bytes.buffer : s.pixels.buffer) as ArrayBuffer;

/** First line of a decoder error, without a dangling colon: the rest is libvips' repeated trace. */
export function decoderReason(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n', 1)[0]!.trim().replace(/:$/, '') || 'unknown decoder error';
}
