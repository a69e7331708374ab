/**
 * Plain data shared by the inference modules: no behaviour, no imports but types. Everything here can cross a
 * worker_threads boundary by structured clone.
 */

export type { FamilyName } from '../identifiers.js';
export type ChannelOrder = 'rgb' | 'bgr';

/** How a model family was trained to see an image: where the resized image sits and how pixels map to floats. */
export interface LetterboxSpec {
  /** 'center': Ultralytics/YOLOv5 (pad split on both sides); 'top-left': YOLOX (pad right and bottom). */
  readonly placement: 'center' | 'top-left';
  /** Padding value 0-255, applied to all three channels. */
  readonly padValue: number;
  /** Channel order of the model's input tensor. */
  readonly channelOrder: ChannelOrder;
  /** tensor = (pixel * scale - mean[c]) / std[c]; mean and std are in the tensor's channel order. */
  readonly scale: number;
  readonly mean: readonly [number, number, number];
  readonly std: readonly [number, number, number];
}

/** Where the source image landed inside the model input: enough to map boxes back. */
export interface LetterboxGeometry {
  readonly srcWidth: number;
  readonly srcHeight: number;
  /** Model input size. */
  readonly dstWidth: number;
  readonly dstHeight: number;
  /** Size of the resized image inside the model input, before padding. */
  readonly resizedWidth: number;
  readonly resizedHeight: number;
  readonly padLeft: number;
  readonly padTop: number;
  readonly padRight: number;
  readonly padBottom: number;
}

/** Shape and name of one model output, as ONNX Runtime reports it (symbolic dims become -1). */
export interface TensorInfo {
  readonly name: string;
  readonly dims: readonly number[];
}

/** What is known about a model before its first inference. */
export interface ModelMeta {
  /** ONNX metadata_props (Ultralytics writes names, imgsz, stride, task ...). */
  readonly props: Readonly<Record<string, string>>;
  /** Model input size in pixels, read from the input tensor's shape (never a constant). */
  readonly inputWidth: number;
  readonly inputHeight: number;
}

/**
 * Decoded candidate boxes, before NMS, as parallel typed arrays (no object per candidate).
 * Boxes are x1,y1,x2,y2 in model-input pixels, 4 floats per candidate.
 */
export interface Candidates {
  readonly count: number;
  readonly boxes: Float32Array;
  readonly scores: Float32Array;
  readonly classes: Int32Array;
}

export interface DecodeOptions {
  /** Candidates scoring below this are dropped before NMS. */
  readonly confThreshold: number;
  /** Only these class ids are kept; null keeps all. */
  readonly classFilter: ReadonlySet<number> | null;
  /** Emit one candidate per class above the threshold (Ultralytics val), instead of the best class only. */
  readonly multiLabel: boolean;
}

export interface NmsOptions {
  readonly iouThreshold: number;
  readonly maxDetections: number;
  /** Suppress across classes (true) or only within a class (false). */
  readonly agnostic: boolean;
}

/** One final detection in original-image pixels. */
export interface Detection {
  readonly classId: number;
  readonly label: string;
  readonly confidence: number;
  readonly xMin: number;
  readonly yMin: number;
  readonly xMax: number;
  readonly yMax: number;
}
