/** Public entry of inference/: the pool, preprocessing, the image path through the pool and the plain data types. */
export * from './pool/index.js';
export { detectImage, type ImagePrep, type ImageRequest, type ImageResult } from './detect-image.js';
export {
  ACCEPTED_FORMATS,
  DCT_SCALING_AVAILABLE,
  dctDenominator,
  IMAGE_EXTENSIONS,
  JPEG_DECODER,
  prepareTensor,
  type Decoder,
  type PreparedTensor,
  type PrepareOptions,
  type PrepareTarget,
  type RasterFormat,
} from './preprocess/index.js';
export { computeLetterbox, mapBoxesToSource } from './preprocess/letterbox.js';
export { sniffFormat } from './preprocess/sniff.js';
export { assertOnnxModel } from './onnx/metadata.js';
export type * from './types.js';
export { annotate, annotateToBuffer, type AnnotatedFormat } from './annotate.js';
