/** Protobuf messages ↔ serving types. Protobuf types stop here. */
import { SightlineError } from '../../errors.js';
import type { DetectInput, DetectResult, StreamItem } from '../../serving/index.js';
import type { DetectRequest, DetectResponse } from '../../generated/sightline/v1/detector.js';

/**
 * DetectRequest.version is text in the contract; in the server a version is the registry's number.
 * Empty: the active version (0). Anything but a positive integer names no version: NOT_FOUND.
 */
export function requestedVersion(r: Pick<DetectRequest, 'model' | 'version'>): number {
  if (r.version === '') return 0;
  const n = /^\d{1,9}$/.test(r.version) ? Number(r.version) : 0;
  if (n > 0) return n;
  const shown = JSON.stringify(r.version.length > 40 ? `${r.version.slice(0, 40)}…` : r.version);
  throw new SightlineError('NOT_FOUND', `${r.model ? `model "${r.model}"` : 'the default model'} has no version ${shown}: versions are numbers`, { model: r.model });
}

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
