/** Scoring models: COCO-style metrics, the YOLO dataset layout, and comparisons of two answers. The public entry of src/eval/. */
export { COCO80_NAMES, COCO80_TO_91 } from './coco-ids.js';
export { compareDetections, type ImageComparison } from './compare.js';
export { NAMES_FILES, loadYoloDataset, pairYoloFiles, readYoloLabels, readYoloNames } from './dataset.js';
export { scoreImages, VAL_SETTINGS, type LatencySummary, type ScoreSettings } from './score.js';
