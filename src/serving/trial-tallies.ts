/**
 * A serving process's tallies of the shadows and canaries it takes part in, by trial id: what its
 * ShadowRunner and DetectService count, and what the follower sends with every report to the registry
 * (which sums them over replicas). A trial that stopped running here is reported once more, with its
 * final counts, and then forgotten. Counts live in this process only: every tally carries the process's
 * incarnation, so the registry adds a restarted process's counts to those of the one before it.
 */
import { randomUUID } from 'node:crypto';
import {
  emptyCanaryTally,
  emptyShadowTally,
  type CanaryTally,
  type ShadowTally,
  type TrialTally,
} from './trial-stats.js';

export class TrialTallies {
  /** This process's id in the registry's tallies, drawn once per process (TrialTally.incarnation). */
  readonly incarnation: string = randomUUID();
  private readonly shadows = new Map<number, { model: string; tally: ShadowTally }>();
  private readonly canaries = new Map<number, { model: string; tally: CanaryTally }>();

  shadow(trialId: number, model: string): ShadowTally {
    let e = this.shadows.get(trialId);
    if (!e) this.shadows.set(trialId, (e = { model, tally: emptyShadowTally() }));
    return e.tally;
  }

  canary(trialId: number, model: string): CanaryTally {
    let e = this.canaries.get(trialId);
    if (!e) this.canaries.set(trialId, (e = { model, tally: emptyCanaryTally() }));
    return e.tally;
  }

  /** A copy of every tally; `running(model, id)` false: the trial ended, reported now for the last time. */
  report(running: (model: string, trialId: number) => boolean): TrialTally[] {
    const out: TrialTally[] = [];
    const copy = <T>(t: T): T => JSON.parse(JSON.stringify(t)) as T;
    for (const [trialId, e] of this.shadows) {
      out.push({ trialId, model: e.model, incarnation: this.incarnation, kind: 'shadow', shadow: copy(e.tally) });
      if (!running(e.model, trialId)) this.shadows.delete(trialId);
    }
    for (const [trialId, e] of this.canaries) {
      out.push({ trialId, model: e.model, incarnation: this.incarnation, kind: 'canary', canary: copy(e.tally) });
      if (!running(e.model, trialId)) this.canaries.delete(trialId);
    }
    return out;
  }
}
