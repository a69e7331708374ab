/**
 * Per-request features for drift and anomaly monitoring. Input features are read from the letterboxed
 * model input (already decoded, so no extra decode; the inference worker hands back its sampling grid),
 * skipping the padding and subsampling the pixels;
 * output features summarise the final detections. Pure: no I/O, no clocks.
 */

/** Cheap summary of the image a request sent. Colour values are 0-255 on the resized (not padded) image. */
export interface InputFeatures {
  /** Mean Rec.601 luma, 0-255. */
  readonly brightness: number;
  /** Standard deviation of luma (RMS contrast), 0-127.5. */
  readonly contrast: number;
  readonly meanR: number;
  readonly meanG: number;
  readonly meanB: number;
  /** Mean HSV saturation, 0-1. */
  readonly saturation: number;
  /** Source image size, before letterboxing. */
  readonly width: number;
  readonly height: number;
  /** width / height of the source image. */
  readonly aspectRatio: number;
}

/** Summary of what the model answered for one request. */
export interface OutputFeatures {
  readonly detectionCount: number;
  /** 0 when there are no detections, so the feature is always defined. */
  readonly meanConfidence: number;
  /** 0 when there are no detections. */
  readonly maxConfidence: number;
  /** classId → number of detections of that class. A record (not a Map) so samples and profiles are JSON. */
  readonly classCounts: Readonly<Record<number, number>>;
}

/** Everything monitored about one request. */
export type FeatureSample = InputFeatures & OutputFeatures;

/** The scalar features, in a stable order (reports and profiles list them in this order). */
export const FEATURE_NAMES = [
  'brightness',
  'contrast',
  'meanR',
  'meanG',
  'meanB',
  'saturation',
  'width',
  'height',
  'aspectRatio',
  'detectionCount',
  'meanConfidence',
  'maxConfidence',
] as const;

export type FeatureName = (typeof FEATURE_NAMES)[number];

// Fails to compile if a name in FEATURE_NAMES is not a numeric field of FeatureSample.
type AssertNumeric<T extends Record<FeatureName, number>> = T;
export type FeatureValues = AssertNumeric<Pick<FeatureSample, FeatureName>>;

/** Rectangle of the resized image inside the model input, in model-input pixels. */
export interface Region {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

export interface InputFeatureOptions {
  /** Read every step-th pixel in x and in y (default 4: 1/16 of the pixels, ~25k at 640x640). */
  readonly step?: number;
}

function assertPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
}

/**
 * Input features of one request.
 * @param pixels model input, HWC RGB uint8, width*height*3 bytes (channel order must be RGB).
 * @param width,height model input size.
 * @param srcWidth,srcHeight original image size (the size features).
 * @param region where the resized image sits inside the input; padding outside it is ignored, since
 *   padding would pull brightness toward the pad value and its share changes with the aspect ratio.
 */
export function inputFeatures(
  pixels: Uint8Array,
  width: number,
  height: number,
  srcWidth: number,
  srcHeight: number,
  region: Region,
  opts: InputFeatureOptions = {},
): InputFeatures {
  const step = opts.step ?? 4;
  assertPositiveInt('width', width);
  assertPositiveInt('height', height);
  assertPositiveInt('srcWidth', srcWidth);
  assertPositiveInt('srcHeight', srcHeight);
  assertPositiveInt('step', step);
  assertPositiveInt('region.width', region.width);
  assertPositiveInt('region.height', region.height);
  if (
    !Number.isInteger(region.left) ||
    !Number.isInteger(region.top) ||
    region.left < 0 ||
    region.top < 0 ||
    region.left + region.width > width ||
    region.top + region.height > height
  ) {
    throw new RangeError(`region ${JSON.stringify(region)} is not inside ${width}x${height}`);
  }
  if (pixels.length < width * height * 3) {
    throw new RangeError(`expected ${width * height * 3} bytes for ${width}x${height}x3, got ${pixels.length}`);
  }

  // Start half a step in, so a subsampled grid is centred in the region rather than hugging its top-left.
  const x0 = region.left + Math.min(step >> 1, region.width - 1);
  const y0 = region.top + Math.min(step >> 1, region.height - 1);
  const x1 = region.left + region.width;
  const y1 = region.top + region.height;
  const rowStride = width * 3;
  const pixStride = step * 3;

  let n = 0;
  let sumR = 0;
  let sumG = 0;
  let sumB = 0;
  let sumY = 0;
  let sumY2 = 0;
  let sumS = 0;
  for (let y = y0; y < y1; y += step) {
    const end = y * rowStride + x1 * 3;
    for (let i = y * rowStride + x0 * 3; i < end; i += pixStride) {
      const r = pixels[i];
      const g = pixels[i + 1];
      const b = pixels[i + 2];
      const luma = 0.299 * r + 0.587 * g + 0.114 * b; // Rec.601
      sumR += r;
      sumG += g;
      sumB += b;
      sumY += luma;
      sumY2 += luma * luma;
      const max = r > g ? (r > b ? r : b) : g > b ? g : b;
      const min = r < g ? (r < b ? r : b) : g < b ? g : b;
      if (max > 0) sumS += (max - min) / max; // HSV saturation; black counts as 0
      n++;
    }
  }
  const meanY = sumY / n;
  return {
    brightness: meanY,
    // Var = E[Y²] − E[Y]²; values ≤ 255 and n ≤ ~10^6 keep this well inside double precision. Clamp rounding.
    contrast: Math.sqrt(Math.max(0, sumY2 / n - meanY * meanY)),
    meanR: sumR / n,
    meanG: sumG / n,
    meanB: sumB / n,
    saturation: sumS / n,
    width: srcWidth,
    height: srcHeight,
    aspectRatio: srcWidth / srcHeight,
  };
}

/** Output features of one request, from its final (post-NMS) detections. */
export function outputFeatures(
  dets: readonly { readonly classId: number; readonly confidence: number }[],
): OutputFeatures {
  const classCounts: Record<number, number> = {};
  let sum = 0;
  let max = 0;
  for (const d of dets) {
    sum += d.confidence;
    if (d.confidence > max) max = d.confidence;
    classCounts[d.classId] = (classCounts[d.classId] ?? 0) + 1;
  }
  return {
    detectionCount: dets.length,
    meanConfidence: dets.length ? sum / dets.length : 0,
    maxConfidence: max,
    classCounts,
  };
}

/** One monitoring sample from the two halves. */
export const featureSample = (input: InputFeatures, output: OutputFeatures): FeatureSample => ({ ...input, ...output });
