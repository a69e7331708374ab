export { sniffFormat, type RasterFormat } from './sniff.js';
export { computeLetterbox, mapBoxesToSource, padToLetterbox, roundHalfEven } from './letterbox.js';
export { toTensor } from './tensor.js';
export {
  ACCEPTED_FORMATS,
  prepareImage,
  type PreparedImage,
  type PrepareLimits,
  type PrepareOptions,
  type PrepareTarget,
} from './decode.js';
