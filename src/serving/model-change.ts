/** A change to a model's pointers or versions, as the registry announces it (WatchModels) and the serving layer reacts to it. */
export type ModelChangeType = 'snapshot' | 'promoted' | 'rolled_back' | 'version_added' | 'version_deleted' | 'profile_updated';

export interface ModelChange {
  type: ModelChangeType;
  model: string;
  activeVersion: number | null;
  rollbackVersion: number | null;
  /** The version added or deleted, or whose drift reference profile was stored. */
  version: number | null;
  activeSha256: string | null;
  rollbackSha256: string | null;
  actor: string;
  reason: string;
  at: string;
}
