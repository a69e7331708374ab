/** The Open Inference Protocol (KServe v2) independent of the wire; transport/grpc and transport/http adapt it. */
export { OpenInference, IMAGE_INPUT, DETECTION_OUTPUTS, PLATFORM, detectParams, detectionTensors, type InferRequest, type InferResponse, type ModelMetadata, type OipLimits, type TensorMetadata } from './infer.js';
export { ModelRepository, type RepositoryEntry, type RepositoryState } from './repository.js';
export { fromRaw, toRaw, splitBytes, toShape, unsupportedDatatype, elementCount, type InputTensor, type OutputTensor, type Params, type ParamValue, type TensorData } from './tensors.js';
