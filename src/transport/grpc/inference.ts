/**
 * inference.GRPCInferenceService (the Open Inference Protocol, with Triton's repository extension):
 * adapters from its messages to transport/oip and back. Answers always carry raw output contents.
 */
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import type {
  GRPCInferenceServiceServer,
  InferParameter,
  ModelInferRequest,
  ModelInferRequest_InferInputTensor,
  ModelInferResponse,
  ModelRepositoryParameter,
} from '../../generated/inference/open_inference_grpc.js';
import { SightlineError } from '../../errors.js';
import type { AccessControl, DetectService } from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import {
  fromRaw,
  toRaw,
  toShape,
  unsupportedDatatype,
  type InputTensor,
  type ModelRepository,
  type OpenInference,
  type Params,
  type ParamValue,
  type TensorData,
} from '../oip/index.js';
import { signalFor } from './deadline.js';
import { clientRequestId, noTelemetry, ObservedCall, requestIdMetadata, type DetectorTelemetry } from './observe.js';
import { callerOf, unary } from './registry.js';
import { grpcCodeOf, toStatus } from './status.js';
import { labelsOf } from '../version.js';

export interface InferenceServiceDeps {
  oip: OpenInference;
  repository: ModelRepository;
  /** For labelling failed calls in metrics (names that match nothing loaded become "unknown"). */
  detect: DetectService;
  /** Server readiness: the same answer as grpc.health.v1 for "". */
  isServing: () => boolean;
  /** The server's release (ServerMetadata). */
  serverVersion: string;
  access?: AccessControl;
}

/** Extensions of the gRPC service (ServerMetadata). */
const OIP_EXTENSIONS = ['model_repository'];

function paramValue(p: InferParameter | ModelRepositoryParameter): ParamValue | undefined {
  if ('bytesParam' in p && p.bytesParam !== undefined) return Buffer.from(p.bytesParam).toString('utf8');
  return (
    p.boolParam ??
    p.int64Param ??
    p.stringParam ??
    ('doubleParam' in p ? p.doubleParam : undefined) ??
    ('uint64Param' in p ? p.uint64Param : undefined)
  );
}

export function fromParams(ps: { [key: string]: InferParameter | ModelRepositoryParameter }): Params {
  const out: Record<string, ParamValue> = {};
  for (const [k, p] of Object.entries(ps)) {
    const v = paramValue(p);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function typedContents(t: ModelInferRequest_InferInputTensor): TensorData {
  const c = t.contents;
  if (t.datatype === 'BYTES') return c?.bytesContents ?? [];
  if (t.datatype === 'FP32') return Float32Array.from(c?.fp32Contents ?? []);
  throw unsupportedDatatype(t.name, t.datatype);
}

const hasTypedContents = (t: ModelInferRequest_InferInputTensor) =>
  !!t.contents && Object.values(t.contents).some((v) => Array.isArray(v) && v.length > 0);

/** The request's inputs, from raw contents (one entry per input) or typed contents, never both. */
export function inputsOf(req: ModelInferRequest): InputTensor[] {
  const raw = req.rawInputContents;
  if (raw.length > 0 && req.inputs.some(hasTypedContents)) {
    throw new SightlineError('INVALID_INPUT', 'raw_input_contents is set, so no input may also carry typed contents', {
      field: 'raw_input_contents',
    });
  }
  if (raw.length > 0 && raw.length !== req.inputs.length) {
    throw new SightlineError(
      'INVALID_INPUT',
      `raw_input_contents has ${raw.length} entries for ${req.inputs.length} input(s): one per input, in order`,
      { field: 'raw_input_contents' },
    );
  }
  return req.inputs.map((t, i) => ({
    name: t.name,
    datatype: t.datatype,
    shape: toShape(t.shape, `input ${t.name}`),
    parameters: fromParams(t.parameters),
    data: raw.length > 0 ? fromRaw(t.name, t.datatype, raw[i]!) : typedContents(t),
  }));
}

export function inferenceHandlers(
  deps: InferenceServiceDeps,
  log: Logger,
  telemetry: DetectorTelemetry = noTelemetry(),
): GRPCInferenceServiceServer {
  const { oip, repository } = deps;
  return {
    serverLive: unary(log, () => ({ live: true })),
    serverReady: unary(log, () => ({ ready: deps.isServing() })),
    modelReady: unary(log, (req) => ({ ready: deps.isServing() && oip.modelReady(req.name, req.version) })),
    serverMetadata: unary(log, () => ({ name: 'sightline', version: deps.serverVersion, extensions: OIP_EXTENSIONS })),
    modelMetadata: unary(log, (req) => {
      const m = oip.metadata(req.name, req.version);
      return {
        ...m,
        inputs: m.inputs.map((t) => ({ ...t, shape: t.shape.map(BigInt) })),
        outputs: m.outputs.map((t) => ({ ...t, shape: t.shape.map(BigInt) })),
      };
    }),

    modelInfer(call: ServerUnaryCall<ModelInferRequest, ModelInferResponse>, cb: sendUnaryData<ModelInferResponse>) {
      const { signal, dispose } = signalFor(call);
      const obs = new ObservedCall(telemetry, 'ModelInfer', call.metadata);
      call.sendMetadata(requestIdMetadata(obs.requestId));
      const req = call.request;
      Promise.resolve()
        .then(() =>
          oip.infer(
            {
              model: req.modelName,
              version: req.modelVersion,
              id: req.id,
              parameters: fromParams(req.parameters),
              inputs: inputsOf(req),
              outputs: req.outputs,
            },
            signal,
            clientRequestId(call.metadata),
          ),
        )
        .then(
          (r) => {
            cb(null, {
              modelName: r.model,
              modelVersion: String(r.version),
              id: r.id,
              parameters: {},
              outputs: r.outputs.map((o) => ({
                name: o.name,
                datatype: o.datatype,
                shape: o.shape.map(BigInt),
                parameters: {},
                contents: undefined,
              })),
              rawOutputContents: r.outputs.map((o) => toRaw(o.data)),
            });
            for (const img of r.images) obs.image(img, img.timing.totalMs / 1000);
            const detections = r.images.reduce((a, img) => a + img.detections.length, 0);
            obs.end(0, r, { 'sightline.images': r.images.length, 'sightline.detections': detections });
            obs.log(
              log,
              { model: r.model, version: r.version, code: 0, images: r.images.length, detections },
              'model infer',
            );
          },
          (e: unknown) => {
            const code = grpcCodeOf(e);
            const labels = labelsOf(deps.detect, req.modelName, req.modelVersion);
            obs.end(code, labels, {}, (e as Error).message);
            obs.log(
              log,
              {
                model: req.modelName,
                version: labels?.version ?? null,
                requestedVersion: req.modelVersion,
                code,
                err: (e as Error).message,
              },
              'model infer failed',
            );
            cb(toStatus(e, log));
          },
        )
        .finally(dispose);
    },

    repositoryIndex: unary(log, (req) => ({ models: repository.index(req.ready) })),
    // The registry audits the promote and the rollback under the caller's name, as for Registry calls.
    repositoryModelLoad: unary(log, async (req, call) => {
      await repository.load(req.modelName, fromParams(req.parameters), callerOf(call));
      return {};
    }),
    repositoryModelUnload: unary(log, async (req, call) => {
      await repository.unload(req.modelName, callerOf(call));
      return {};
    }),
  };
}
