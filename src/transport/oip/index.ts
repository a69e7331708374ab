/** The Open Inference Protocol (KServe v2) independent of the wire; transport/grpc and transport/http adapt it. */
export {
  OpenInference,
  IMAGE_INPUT,
  detectParams,
  type InferRequest,
  type InferResponse,
  type ModelMetadata,
  type OipLimits,
} from './infer.js';
export { ModelRepository, type RepositoryEntry } from './repository.js';
export {
  fromRaw,
  toRaw,
  toShape,
  unsupportedDatatype,
  type InputTensor,
  type OutputTensor,
  type Params,
  type ParamValue,
  type TensorData,
} from './tensors.js';
