/**
 * Authentication and authorisation at the edge: one table says which capability each RPC needs, and
 * a server interceptor enforces it before any handler runs. The caller's principal is handed to the
 * handlers in the `x-sightline-principal` metadata (any value a client sent under that name is dropped).
 */
import { Metadata, ServerInterceptingCall, type ServerInterceptor } from '@grpc/grpc-js';
import type { AccessControl, Requirement } from '../../serving/index.js';
import { toStatus } from './status.js';
import type { Logger } from '../../telemetry/logger.js';

export const PRINCIPAL_KEY = 'x-sightline-principal';

/**
 * Every RPC this server can serve and the capability it needs (a list: any one of them). Roles: viewer
 * {view}, inferencer {view, infer}, publisher {view, publish}, admin {view, infer, publish, administer};
 * the replicas' token: {view, replicate}. A method missing here is refused (fail closed).
 */
export const RPC_CAPABILITY: Readonly<Record<string, Requirement>> = {
  '/sightline.v1.Detector/Detect': 'infer',
  '/sightline.v1.Detector/Stream': 'infer',
  '/sightline.v1.Registry/UploadVersion': 'publish',
  '/sightline.v1.Registry/ListModels': 'view',
  '/sightline.v1.Registry/ListVersions': 'view',
  '/sightline.v1.Registry/GetVersion': 'view',
  '/sightline.v1.Registry/GetModelStatus': 'view',
  '/sightline.v1.Registry/GetHistory': 'view',
  '/sightline.v1.Registry/WatchModels': 'view',
  // Decrypted model bytes: only replicas (to load the versions they serve) and admins, never viewers.
  '/sightline.v1.Registry/FetchBlob': ['replicate', 'administer'],
  '/sightline.v1.Registry/SyncTokens': 'replicate',
  // Only replicas tell the registry what they serve: a report from anyone else would fake the fleet view.
  '/sightline.v1.Registry/ReportReplica': 'replicate',
  '/sightline.v1.Registry/WatchRollout': 'view',
  '/sightline.v1.Registry/GetProfile': 'view',
  // What BuildProfile needs: a replica forwards its caller's token with the profile it built.
  '/sightline.v1.Registry/PutProfile': 'publish',
  '/sightline.v1.Registry/Promote': 'administer',
  '/sightline.v1.Registry/Rollback': 'administer',
  '/sightline.v1.Registry/DeleteVersion': 'administer',
  // Golden datasets and evaluations are evidence, as uploads of versions are: publishers provide it.
  '/sightline.v1.Registry/UploadDataset': 'publish',
  '/sightline.v1.Registry/ListDatasets': 'view',
  '/sightline.v1.Registry/Evaluate': 'publish',
  // A shadow or canary changes what every replica loads and, for a canary, what clients get: admins.
  '/sightline.v1.Registry/StartShadow': 'administer',
  '/sightline.v1.Registry/StopShadow': 'administer',
  '/sightline.v1.Registry/GetShadowReport': 'view',
  '/sightline.v1.Registry/StopCanary': 'administer',
  '/sightline.v1.Monitoring/GetDriftReport': 'view',
  '/sightline.v1.Monitoring/BuildProfile': 'publish',
  // Open Inference Protocol (KServe v2). Liveness and server readiness are probes, like grpc.health.v1;
  // which models exist (ModelReady, metadata, the repository index) needs view.
  '/inference.GRPCInferenceService/ServerLive': 'public',
  '/inference.GRPCInferenceService/ServerReady': 'public',
  '/inference.GRPCInferenceService/ModelReady': 'view',
  '/inference.GRPCInferenceService/ServerMetadata': 'view',
  '/inference.GRPCInferenceService/ModelMetadata': 'view',
  '/inference.GRPCInferenceService/ModelInfer': 'infer',
  '/inference.GRPCInferenceService/RepositoryIndex': 'view',
  // Load promotes a version, unload rolls back: the registry's pointer changes.
  '/inference.GRPCInferenceService/RepositoryModelLoad': 'administer',
  '/inference.GRPCInferenceService/RepositoryModelUnload': 'administer',
  // Probes (the kubelet, load balancers) carry no token.
  '/grpc.health.v1.Health/Check': 'public',
  '/grpc.health.v1.Health/Watch': 'public',
  '/grpc.health.v1.Health/List': 'public',
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': 'view',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': 'view',
};

/** The principal the auth interceptor established for this call ("anonymous" when auth is off). */
export function principalOf(call: { metadata: Metadata }): string {
  return String(call.metadata.get(PRINCIPAL_KEY)[0] ?? 'anonymous');
}

export function authInterceptor(access: AccessControl, log: Logger): ServerInterceptor {
  return (method, call) =>
    new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (md, mdNext) => {
            md.remove(PRINCIPAL_KEY);
            const cert = call.getAuthContext().sslPeerCertificate;
            const cn = cert && Object.keys(cert).length ? cert.subject?.CN : undefined;
            const subject = Array.isArray(cn) ? (cn[0] ?? null) : (cn ?? null);
            const decision = access.authorize(
              {
                method: method.path,
                peer: call.getPeer(),
                authorization: md.get('authorization')[0]?.toString(),
                certSubject: subject,
              },
              RPC_CAPABILITY[method.path] ?? 'administer',
            );
            if (!decision.ok) {
              const s = toStatus(decision.error, log);
              call.sendStatus({ code: s.code!, details: s.details!, metadata: new Metadata() });
              return;
            }
            md.set(PRINCIPAL_KEY, decision.principal);
            mdNext(md);
          },
        });
      },
    });
}
