/**
 * The registry as a serving process sees it: the one contract the ModelFollower follows, with two
 * implementations. In role all the registry is in the same process (localRegistryPeer below); on an
 * inference replica it is across the network (transport/grpc/registry-peer.ts).
 */
import type { ReplicaReport } from './fleet.js';
import type { ModelChange } from './model-change.js';
import type { ModelFile } from './models.js';
import type { ModelRegistry } from './registry.js';

export interface RegistryPeer {
  /**
   * Calls onChange with a snapshot change per model, then 'synced', then every change as it happens;
   * onEnd when the stream breaks (the follower reconnects). Returns the function that stops watching.
   */
  watch(onChange: (c: ModelChange) => void, onEnd: (e: Error | null) => void): () => void;
  /** A version's file, verified against its sha256 before it is returned, and what loading it needs. */
  fetchModel(model: string, version: number): Promise<ModelFile>;
  /** Tells the registry what this server serves. Never throws: a lost report is replaced by the next one. */
  report(r: ReplicaReport): void;
  /** This server stops serving (shutdown): the registry drops it from the fleet view now, so no rollout waits for it. */
  leave?(): void;
}

/** Role all: the registry in this process. Changes arrive synchronously, as the registry commits them. */
export function localRegistryPeer(
  registry: Pick<ModelRegistry, 'watch' | 'getVersion' | 'readBlob' | 'report'>,
): RegistryPeer {
  return {
    watch: (onChange) => registry.watch(onChange),
    async fetchModel(model, version) {
      const v = registry.getVersion(model, version);
      return {
        sha256: v.sha256,
        bytes: new Uint8Array(await registry.readBlob(v.sha256)),
        family: v.family as ModelFile['family'],
        classNames: v.classNames,
      };
    },
    report: (r) => registry.report(r),
  };
}
