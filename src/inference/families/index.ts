/** Public entry of the model families: the contract, the three decoders, resolution and names. */
export type { Family } from './family.js';
export { UltralyticsFamily, createUltralyticsFamily } from './ultralytics.js';
export { Yolov5Family, createYolov5Family, YOLOV5_ANCHORS_PER_CELL } from './yolov5.js';
export { YoloxFamily, createYoloxFamily, YOLOX_LETTERBOX } from './yolox.js';
export { ULTRALYTICS_LETTERBOX, gridPoints, YOLO_STRIDES } from './common.js';
export { resolveFamily, resolveNames, describeOutputs } from './resolve.js';
export { parseUltralyticsNames, parseLabelsFile, labelFor } from './names.js';
