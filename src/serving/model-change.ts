/** A change to a model's pointers or versions, as the registry announces it (WatchModels) and the serving layer reacts to it. */
export type ModelChangeType =
  'snapshot' | 'synced' | 'promoted' | 'rolled_back' | 'version_added' | 'version_deleted' | 'profile_updated';

export interface ModelChange {
  /** 'synced': the end of a watch's snapshot (no model fields); every other type names a model. */
  type: ModelChangeType;
  model: string;
  activeVersion: number | null;
  rollbackVersion: number | null;
  /** The version added or deleted, or whose drift reference profile was stored. */
  version: number | null;
  /** Every version of the model after the change. */
  versions: readonly number[];
  activeSha256: string | null;
  rollbackSha256: string | null;
  actor: string;
  reason: string;
  at: string;
}
