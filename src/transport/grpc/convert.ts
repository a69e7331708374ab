/** Protobuf messages ↔ serving types. Protobuf types stop here. */
import type { DetectInput, DetectResult, StreamItem } from '../../serving/index.js';
import type { DetectRequest, DetectResponse } from '../../generated/sightline/v1/detector.js';
import { parseVersion } from '../version.js';

/** DetectRequest.version is text in the contract; in the server a version is the registry's number. */
export const requestedVersion = (r: Pick<DetectRequest, 'model' | 'version'>): number =>
  parseVersion(r.model, r.version);

export const fromDetectRequest = (r: DetectRequest): DetectInput => ({
  model: r.model,
  version: requestedVersion(r),
  image: r.image,
  confidenceThreshold: r.confidenceThreshold,
  iouThreshold: r.iouThreshold,
  maxDetections: r.maxDetections,
  classes: r.classes,
  agnosticNms: r.agnosticNms,
  frameId: r.frameId,
});

export const toDetectResponse = (r: DetectResult): DetectResponse => ({
  model: r.model,
  version: String(r.version),
  modelSha256: r.modelSha256,
  frameId: r.frameId,
  imageWidth: r.imageWidth,
  imageHeight: r.imageHeight,
  detections: r.detections.map((d) => ({
    classId: d.classId,
    label: d.label,
    confidence: d.confidence,
    xMin: d.xMin,
    yMin: d.yMin,
    xMax: d.xMax,
    yMax: d.yMax,
  })),
  timing: r.timing,
  dropped: false,
});

/** A DetectResponse as JSON with every field, defaults included (proto JSON names; int64 as a string), as `sightline detect --json` prints it. */
export const toDetectJson = (r: DetectResult) => ({ ...toDetectResponse(r), frameId: r.frameId.toString() });

const droppedResponse = (frameId: bigint): DetectResponse => ({
  model: '',
  version: '',
  modelSha256: '',
  frameId,
  imageWidth: 0,
  imageHeight: 0,
  detections: [],
  timing: undefined,
  dropped: true,
});

export const toStreamResponse = (item: StreamItem): DetectResponse =>
  item.kind === 'result' ? toDetectResponse(item.result) : droppedResponse(item.frameId);
