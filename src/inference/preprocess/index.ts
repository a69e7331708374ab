export { sniffFormat, type RasterFormat } from './sniff.js';
export { computeLetterbox, mapBoxesToSource, roundHalfEven } from './letterbox.js';
export { readJpegHeader, orientedSize, type JpegHeader, type Orientation } from './jpeg-header.js';
export { letterboxToTensor, sampleLetterboxed, orientationStrides, type RgbImage } from './resample.js';
export { DCT_SCALING_AVAILABLE, dctDenominator, JPEG_DECODER, JpegDecoder, turboRefused } from './jpeg-turbo.js';
export { transferOf, type Decoder, type ImageSource } from './source.js';
export {
  ACCEPTED_FORMATS,
  IMAGE_EXTENSIONS,
  prepareSource,
  turboCanDecode,
  type PreparedSource,
  type PrepareLimits,
  type PrepareOptions,
  type PrepareTarget,
} from './decode.js';
export { sourceToTensor, type TensorTiming } from './to-tensor.js';
export { prepareTensor, withDecoderFallback, type PreparedTensor } from './pipeline.js';
