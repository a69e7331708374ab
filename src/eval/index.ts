/** Scoring models: COCO-style metrics, the YOLO dataset layout, and comparisons of two answers. The public entry of src/eval/. */
export { compareDetections, MATCH_IOU, type ClassDiff, type ImageComparison } from './compare.js';
export {
  IMAGE_EXTENSIONS,
  NAMES_FILES,
  loadYoloDataset,
  pairYoloFiles,
  readYoloLabels,
  readYoloNames,
  type DatasetImage,
  type YoloDataset,
} from './dataset.js';
export { evaluateDetections, type ClassMetrics, type DetectionMetrics } from './map.js';
export {
  scoreImages,
  VAL_SETTINGS,
  type LabelledImage,
  type LatencySummary,
  type ScoreResult,
  type ScoreSettings,
} from './score.js';
