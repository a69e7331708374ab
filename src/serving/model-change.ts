/** A change to a model's pointers or versions, as the registry announces it (WatchModels) and the serving layer reacts to it. */
export type ModelChangeType =
  | 'snapshot'
  | 'synced'
  | 'promoted'
  | 'rolled_back'
  | 'version_added'
  | 'version_deleted'
  | 'profile_updated'
  | 'trial_changed';

/** A shadow or canary of a candidate version, as servers need it: which version, and what share of requests. */
export interface TrialRef {
  readonly id: number;
  readonly version: number;
  /** Shadow: the share of live requests also run on the candidate. Canary: the share it serves. */
  readonly share: number;
}

export interface ModelChange {
  /** 'synced': the end of a watch's snapshot (no model fields); every other type names a model. 'trial_changed': a shadow or canary started or ended. */
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
  /** The model's running shadow and canary after the change; null when none. */
  shadow: TrialRef | null;
  canary: TrialRef | null;
  actor: string;
  reason: string;
  at: string;
}
