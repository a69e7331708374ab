/**
 * The model repository extension (Triton's RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload)
 * mapped onto the registry's pointers, through the registry's public operations only (which audit them):
 * - index: every version the registry holds, with its serving state here;
 * - load: promote a version (parameter "version"; default the newest), loading and warming it first;
 * - unload: roll the model back to its rollback target (the registry never leaves a model without
 *   an active version, so "stop serving this version" is the only unload it has).
 * On an inference replica there is no registry here: the index lists what this replica has loaded,
 * and load/unload answer FAILED_PRECONDITION, pointing to the registry.
 */
import { SightlineError } from '../../errors.js';
import type { Caller, LoadedVersionView, ModelRegistry, TensorService } from '../../serving/index.js';
import type { Params } from './tensors.js';

export type RepositoryState = 'READY' | 'LOADING' | 'UNLOADING' | 'UNAVAILABLE';

export interface RepositoryEntry {
  name: string;
  version: string;
  state: RepositoryState;
  reason: string;
}

const STATE: Record<LoadedVersionView['state'], RepositoryState> = {
  loading: 'LOADING',
  warming: 'LOADING',
  ready: 'READY',
  serving: 'READY',
  draining: 'UNLOADING',
  failed: 'UNAVAILABLE',
};

const REPLICA =
  'this server is an inference replica: it follows the registry and has no repository ' +
  'of its own; load (promote) and unload (roll back) on the registry, e.g. ' +
  '`sightline registry promote NAME VERSION --server REGISTRY`';

export class ModelRepository {
  constructor(
    /** The registry (roles all and registry); null on an inference replica. */
    private readonly modelRegistry: ModelRegistry | null,
    private readonly tensors: TensorService,
  ) {}

  index(readyOnly: boolean): RepositoryEntry[] {
    const loaded = this.tensors.loaded();
    const entries = this.modelRegistry
      ? this.registryIndex(loaded)
      : loaded.map((l) => this.entry(l, l.active ? 'active' : 'loaded'));
    return readyOnly ? entries.filter((e) => e.state === 'READY') : entries;
  }

  /** Promotes `parameters.version` (string or integer; default the newest version) of `model`. */
  async load(model: string, parameters: Params, caller: Caller): Promise<number> {
    const registry = this.registry();
    const v = parameters.version;
    let version: number;
    if (v === undefined || v === '') {
      const versions = registry.listVersions(model).filter((r) => r.state !== 'corrupt');
      if (versions.length === 0)
        throw new SightlineError('NOT_FOUND', `model "${model}" has no servable version`, { model });
      version = Math.max(...versions.map((r) => r.version));
    } else {
      version = Number(v);
      if (typeof v === 'boolean' || !Number.isInteger(version) || version < 1)
        throw new SightlineError(
          'INVALID_INPUT',
          `parameter version must be a version number like "3"; got ${JSON.stringify(String(v))}`,
          { field: 'version' },
        );
    }
    await registry.promote(model, version, caller, 'RepositoryModelLoad (Open Inference Protocol)');
    return version;
  }

  /** Rolls `model` back to its rollback target: the active version stops serving. */
  async unload(model: string, caller: Caller): Promise<void> {
    const registry = this.registry();
    const status = registry.status(model);
    if (status.rollbackVersion === null) {
      throw new SightlineError(
        'PRECONDITION',
        `model ${model} has no rollback target: the registry never leaves a model without an active version (promote another version instead)`,
        { model },
      );
    }
    await registry.rollback(model, caller, 'RepositoryModelUnload (Open Inference Protocol)');
  }

  private registry(): ModelRegistry {
    if (!this.modelRegistry) throw new SightlineError('PRECONDITION', REPLICA);
    return this.modelRegistry;
  }

  private registryIndex(loaded: LoadedVersionView[]): RepositoryEntry[] {
    const registry = this.modelRegistry!;
    return registry.listModels().flatMap((m) =>
      registry.listVersions(m.name).map((r) => {
        const role =
          r.version === m.activeVersion ? 'active' : r.version === m.rollbackVersion ? 'rollback target' : '';
        const l = loaded.find((x) => x.model === m.name && x.version === r.version);
        if (r.state === 'corrupt')
          return {
            name: m.name,
            version: String(r.version),
            state: 'UNAVAILABLE' as const,
            reason: `corrupt: ${r.corruptReason ?? 'blob verification failed'}`,
          };
        if (!l)
          return {
            name: m.name,
            version: String(r.version),
            state: 'UNAVAILABLE' as const,
            reason: role ? `${role}, not loaded` : 'not loaded',
          };
        return this.entry(l, role || 'loaded');
      }),
    );
  }

  private entry(l: LoadedVersionView, role: string): RepositoryEntry {
    return {
      name: l.model,
      version: String(l.version),
      state: STATE[l.state],
      reason: l.state === 'failed' ? `load failed: ${l.error ?? ''}` : STATE[l.state] === 'READY' ? role : l.state,
    };
  }
}
