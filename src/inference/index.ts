/** Public entry of inference/: the pool, preprocessing and the plain data types. */
export * from './pool/index.js';
export { prepareImage, ACCEPTED_FORMATS, type PreparedImage, type PrepareOptions, type RasterFormat } from './preprocess/index.js';
export { computeLetterbox, mapBoxesToSource } from './preprocess/letterbox.js';
export { sniffFormat } from './preprocess/sniff.js';
export type * from './types.js';
export { annotate, annotateToBuffer, type AnnotatedFormat, type Box } from './annotate.js';
