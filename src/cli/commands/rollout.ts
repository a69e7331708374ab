/**
 * What `registry status`, `promote` and `rollback` print: a model's pointers and every replica with
 * its versions, its running canary and shadow, and a rollout followed to its end (`--wait`). JSON output names states, never enum
 * numbers.
 */
import { Metadata } from '@grpc/grpc-js';
import {
  RolloutPhase,
  VersionState,
  type ModelStatus,
  type RegistryClient,
  type Rollout,
} from '../../generated/sightline/v1/registry.js';
import { canaryJson, printCanary, printShadow, shadowJson } from './evidence.js';

const lower = (name: string, prefix: string) => name.replace(prefix, '').toLowerCase();
export const stateName = (s: VersionState) =>
  s === VersionState.VERSION_STATE_UNSPECIFIED ? 'not started' : lower(VersionState[s] ?? String(s), 'VERSION_STATE_');
export const phaseName = (p: RolloutPhase) => lower(RolloutPhase[p] ?? String(p), 'ROLLOUT_PHASE_');

/** A rollout for scripts: states and phase by name, no zero placeholders for "none". */
export const rolloutJson = (r: Rollout) => ({
  ...r,
  id: Number(r.id),
  phase: phaseName(r.phase),
  replicas: r.replicas.map((p) => ({
    ...p,
    state: p.state === VersionState.VERSION_STATE_UNSPECIFIED ? null : stateName(p.state),
  })),
  rolledBackBy: Number(r.rolledBackBy) || null,
});

export const statusJson = (s: ModelStatus) => ({
  ...s,
  replicas: s.replicas.map((r) => ({ ...r, versions: r.versions.map((v) => ({ ...v, state: stateName(v.state) })) })),
  rollout: s.rollout ? rolloutJson(s.rollout) : null,
  shadow: s.shadow ? shadowJson(s.shadow) : null,
  canary: s.canary ? canaryJson(s.canary) : null,
});

const versions = (vs: ModelStatus['replicas'][number]['versions']) =>
  vs
    .map(
      (v) =>
        `${v.version} ${stateName(v.state)}` +
        (v.provider ? ` on ${v.provider}` : '') +
        (v.inFlight ? `, ${v.inFlight} in flight` : '') +
        (v.error ? `: ${v.error}` : ''),
    )
    .join('; ') || 'none';

export function describeRollout(r: Rollout): string {
  const head = `rollout ${r.id} (${r.action} of ${r.model} to version ${r.version} by ${r.actor})`;
  return r.phase === RolloutPhase.ROLLOUT_PHASE_IN_PROGRESS
    ? `${head}: in progress, ${r.ready}/${r.total} replica(s) ready`
    : `${head}: ${phaseName(r.phase)}: ${r.reason}`;
}

export function printStatus(s: ModelStatus): void {
  console.log(
    `model ${s.model}: active ${s.activeVersion || '-'}, rollback ${s.rollbackVersion || '-'}; ${s.replicas.length} replica(s)`,
  );
  for (const r of s.replicas) {
    const moving = r.activeVersion && r.activeVersion !== r.servingVersion ? ` (moving to ${r.activeVersion})` : '';
    console.log(`  ${r.replica}: serving ${r.servingVersion || '-'}${moving}; versions: ${versions(r.versions)}`);
  }
  if (s.rollout) console.log(`latest ${describeRollout(s.rollout)}`);
  if (s.canary) printCanary(s.canary);
  if (s.shadow) printShadow(s.shadow);
}

/** One progress line: ready/total, and where each replica not yet serving the version stands. */
function progressLine(r: Rollout): string {
  const pending = r.replicas
    .filter((p) => p.servingVersion !== r.version)
    .map((p) => `${p.replica} ${stateName(p.state)}`);
  return `${r.model} version ${r.version}: ${r.ready}/${r.total} replica(s) ready${pending.length ? ` (${pending.join(', ')})` : ''}`;
}

/**
 * Follows a rollout to its end (WatchRollout), printing a progress line whenever it changes unless
 * `quiet`. The client gives up a minute after the rollout's own deadline (a registry that went away).
 */
export function followRollout(client: RegistryClient, model: string, id: bigint, quiet: boolean): Promise<Rollout> {
  return new Promise((resolve, reject) => {
    const call = client.watchRollout({ model, rolloutId: id }, new Metadata());
    let last: Rollout | null = null;
    let shown = '';
    let giveUp: NodeJS.Timeout | undefined;
    call.on('data', (r: Rollout) => {
      last = r;
      if (!giveUp && r.deadline)
        giveUp = setTimeout(() => call.cancel(), Math.max(0, Date.parse(r.deadline) - Date.now()) + 60_000);
      const line = progressLine(r);
      if (!quiet && line !== shown) console.log((shown = line));
    });
    call.on('error', (e) => (clearTimeout(giveUp), reject(e)));
    call.on('end', () => {
      clearTimeout(giveUp);
      if (last) resolve(last);
      else reject(new Error(`the registry ended the watch of ${model}'s rollout without a word`));
    });
  });
}

/**
 * `--wait`: follows the rollout a promote or rollback started; on failure names every failing
 * replica, then follows the automatic rollback, if any. Exit status 0 only when the rollout succeeded.
 */
export async function waitForRollout(client: RegistryClient, s: ModelStatus, json: boolean | undefined): Promise<void> {
  if (!s.rollout)
    throw new Error(
      `no rollout of ${s.model} to follow: version ${s.activeVersion} was already active before the registry started`,
    );
  const r = await followRollout(client, s.model, s.rollout.id, !!json);
  const succeeded = r.phase === RolloutPhase.ROLLOUT_PHASE_SUCCEEDED;
  if (!succeeded) process.exitCode = 1;
  if (!json) {
    if (succeeded) console.log(describeRollout(r));
    else {
      console.error(`sightline: ${describeRollout(r)}`);
      for (const p of r.replicas.filter((x) => x.state === VersionState.VERSION_STATE_FAILED))
        console.error(`  ${p.replica}: ${p.error}`);
    }
  }
  const back = r.rolledBackBy ? await followRollout(client, s.model, r.rolledBackBy, !!json) : null;
  if (back && !json)
    (back.phase === RolloutPhase.ROLLOUT_PHASE_SUCCEEDED ? console.log : console.error)(describeRollout(back));
  if (json)
    process.stdout.write(
      JSON.stringify(
        { rollout: rolloutJson(r), rollback: back ? rolloutJson(back) : null },
        (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v),
        2,
      ) + '\n',
    );
}
