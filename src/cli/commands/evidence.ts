/**
 * `sightline registry dataset|evaluate|shadow|canary`: the evidence a promote is judged on, and the
 * way it is printed wherever a version, a status or a shadow is shown.
 */
import { Command, InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import { relative, sep } from 'node:path';
import { loadYoloDataset, NAMES_FILES } from '../../eval/index.js';
import {
  TrialOutcome,
  VersionState,
  type CanaryStatus,
  type ModelStatus,
  type Dataset,
  type DatasetUploadChunk,
  type Evaluation,
  type RegistryClient,
  type ShadowReport,
  type Trial,
} from '../../generated/sightline/v1/registry.js';
import { SightlineError } from '../../errors.js';
import { assertReadableDir, durationArg, intArg } from '../args.js';
import { call } from '../client.js';
import { action, common, print, type Common } from './registry-common.js';

const CHUNK_BYTES = 1024 * 1024;

/** What a measurement prints as when there is none (absent in the report, and in --json). */
const NONE = '–';
const f3 = (x: number | undefined) => (x === undefined ? NONE : x.toFixed(3));
const ms = (x: number | undefined) => (x === undefined ? NONE : `${x.toFixed(x < 10 ? 1 : 0)} ms`);
const pct = (x: number) => `${+(x * 100).toFixed(2)} %`;

/** "coco128" or "coco128@2" (version 0: the latest). */
export function datasetRef(v: string): { dataset: string; datasetVersion: number } {
  const m = /^([^@\s]+)(?:@([1-9]\d{0,8}))?$/.exec(v.trim());
  if (!m)
    throw new InvalidArgumentError(
      `expected NAME or NAME@VERSION (a version number from 1, as \`dataset list\` shows), such as coco128@2, got "${v}"`,
    );
  return { dataset: m[1]!, datasetVersion: m[2] ? Number(m[2]) : 0 };
}

const NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

/** A share as written ("10%", "0.1"): its number's text, its value (NaN if not a number), and whether a % followed. */
function shareText(v: string): { num: string; n: number; percent: boolean } {
  const t = v.trim();
  const percent = t.endsWith('%');
  const num = percent ? t.slice(0, -1).trim() : t;
  return { num, n: NUMBER.test(num) ? Number(num) : Number.NaN, percent };
}

/**
 * A canary's share in percent: "10%" or "10". A bare number below 1 is refused as ambiguous (0.1 reads
 * like a fraction, a tenth, but would mean 0.1 %): "0.1%" confirms it.
 */
export function percentArg(v: string): number {
  const { num, n, percent } = shareText(v);
  if (!(n > 0 && n < 100))
    throw new InvalidArgumentError(`expected a share of requests above 0 % and below 100 %, such as 10%, got "${v}"`);
  if (!percent && n < 1)
    throw new InvalidArgumentError(
      `${num} means ${num} %; write ${num}% to confirm or ${+(n * 100).toFixed(4)}% for ${n === 0.1 ? 'a tenth' : `${num} of the requests`}`,
    );
  return n;
}

/**
 * A shadow's sample, a share of requests in (0, 1]: a fraction (0.1) or a percent (10%). A bare number
 * above 1 is refused with what was likely meant (10 is not a fraction; 10% is).
 */
export function sampleArg(v: string): number {
  const { num, n: written, percent } = shareText(v);
  const n = percent ? written / 100 : written;
  if (!percent && n > 1 && n <= 100)
    throw new InvalidArgumentError(
      `--sample is a fraction of requests in (0, 1]; for ${num} %, write ${num}% or ${+(n / 100).toFixed(6)}`,
    );
  if (!(n > 0 && n <= 1))
    throw new InvalidArgumentError(
      `expected a share of requests above 0 and at most 1, such as 0.1 or 10%, got "${v}"`,
    );
  return n;
}

/** One evaluation in a line: what `versions` prints under each version. */
export const evaluationLine = (e: Evaluation) =>
  `${e.dataset}@${e.datasetVersion}: mAP@0.5 ${f3(e.map50)}, ` +
  `mAP@0.5:0.95 ${f3(e.map5095)}, latency p50 ${ms(e.latencyP50Ms)} p99 ` +
  `${ms(e.latencyP99Ms)} (${e.images} images, ${e.provider}, ` +
  `${e.createdAt} by ${e.createdBy})`;

/** An evaluation with its per-class AP: what `show` and `evaluate` print. */
export function printEvaluation(e: Evaluation, indent = ''): void {
  console.log(`${indent}${evaluationLine(e)}`);
  console.log(
    `${indent}  precision ${f3(e.precision)}, recall ${f3(e.recall)} (conf 0.25, IoU 0.5); ${e.boxes} labelled boxes`,
  );
  for (const c of e.perClass)
    console.log(`${indent}  ${c.name.padEnd(16)} AP50 ${f3(c.ap50)}  AP50-95 ${f3(c.ap5095)}  (${c.boxes} boxes)`);
}

const OUTCOME_NAME: Record<TrialOutcome, string> = {
  [TrialOutcome.TRIAL_OUTCOME_UNSPECIFIED]: 'unknown',
  [TrialOutcome.TRIAL_OUTCOME_RUNNING]: 'running',
  [TrialOutcome.TRIAL_OUTCOME_STOPPED]: 'stopped',
  [TrialOutcome.TRIAL_OUTCOME_PROMOTED]: 'promoted',
  [TrialOutcome.TRIAL_OUTCOME_ROLLED_BACK]: 'rolled back',
  [TrialOutcome.TRIAL_OUTCOME_SUPERSEDED]: 'superseded',
  [TrialOutcome.UNRECOGNIZED]: 'unknown',
};

const trialState = (t: Trial) =>
  t.outcome === TrialOutcome.TRIAL_OUTCOME_RUNNING ? 'running' : `${OUTCOME_NAME[t.outcome]} ${t.endedAt}: ${t.reason}`;

/** JSON for scripts: outcomes by name, bigints as numbers. */
export const trialJson = (t: Trial | undefined) =>
  t ? { ...t, id: Number(t.id), outcome: OUTCOME_NAME[t.outcome] } : null;
export const shadowJson = (r: ShadowReport) => ({ ...r, trial: trialJson(r.trial) });
export const canaryJson = (c: CanaryStatus) => ({ ...c, trial: trialJson(c.trial) });

/** A shadow's report: samples, agreement, drops, per-class differences and latency. */
export function printShadow(r: ShadowReport, indent = ''): void {
  const t = r.trial!;
  const dropped = Object.entries(r.dropped).filter(([, n]) => n > 0n);
  console.log(
    `${indent}shadow ${t.id} of ${t.model} version ${t.version} against ` +
      `version ${t.baselineVersion}, ${pct(t.share)} of requests, ` +
      `started ${t.startedAt} by ${t.startedBy}: ${trialState(t)}`,
  );
  const shift = r.confidenceShift;
  console.log(
    `${indent}  ${r.samples} samples from ${r.replicas} replica(s)` +
      `: agreement mean ${f3(r.agreementMean)}, p10 ${f3(r.agreementP10)}` +
      `; confidence shift of matched boxes ${shift !== undefined && shift >= 0 ? '+' : ''}${f3(shift)}` +
      `; ${r.failed} failed; dropped ${dropped.length ? dropped.map(([k, n]) => `${n} ${k}`).join(', ') : 'none'}`,
  );
  if (r.dropped.not_loaded)
    console.log(
      `${indent}  (not_loaded: sampled before the candidate was warm on a replica; \`shadow start --wait\` returns once it is)`,
    );
  console.log(
    r.latencyPairs
      ? `${indent}  latency (${r.latencyPairs} comparable pairs): active mean ${ms(r.activeLatencyMeanMs)} p99 ${ms(r.activeLatencyP99Ms)}, ` +
          `candidate mean ${ms(r.candidateLatencyMeanMs)} p99 ${ms(r.candidateLatencyP99Ms)}, ratio ${r.latencyRatio?.toFixed(2) ?? NONE}`
      : `${indent}  latency: no comparable pairs (the live requests ran on the latency session)`,
  );
  const diff = r.classes.filter((c) => c.missing > 0n || c.extra > 0n);
  if (diff.length)
    console.log(
      `${indent}  class            matched  missing  extra   (missing: only the active version found them; extra: only the candidate)`,
    );
  for (const c of diff)
    console.log(
      `${indent}  ${c.name.padEnd(16)} ${String(c.matched).padStart(7)} ${String(c.missing).padStart(8)} ${String(c.extra).padStart(6)}`,
    );
}

export function printCanary(c: CanaryStatus, indent = ''): void {
  const t = c.trial!;
  const arm = (a: NonNullable<CanaryStatus['canary']>) =>
    `${a.requests} requests, ${a.errors} errors (${pct(a.errorRate)}), p50 ${ms(a.p50Ms)}, p99 ${ms(a.p99Ms)}`;
  console.log(
    `${indent}canary ${t.id} of ${t.model} version ${t.version} on ` +
      `${pct(t.share)} of requests against version ${t.baselineVersion}, ` +
      `started ${t.startedAt} by ${t.startedBy}, ${c.replicas} replica(s)`,
  );
  console.log(`${indent}  canary:   ${arm(c.canary!)}`);
  console.log(`${indent}  baseline: ${arm(c.baseline!)}`);
  console.log(
    `${indent}  rolled back when, over ${c.minSamples} requests per arm, ` +
      `its p99 > ${(1 + c.p99Margin).toFixed(2)} × the baseline's or its error ` +
      `rate > the baseline's + ${pct(c.errorRateMargin)}`,
  );
}

/** `shadow start --wait` waits this long by default, polling the model's status this often. */
const SHADOW_WAIT_MS = 120_000;
const WAIT_POLL_MS = 200;
const WARM: ReadonlySet<VersionState> = new Set([VersionState.VERSION_STATE_READY, VersionState.VERSION_STATE_SERVING]);

/**
 * `shadow start --wait`: polls the model's status until every replica (at least one) holds the
 * shadow's candidate warm, printing the count as it changes unless `quiet`. Fails (exit 1) when a
 * replica reports the candidate failed to load, when the shadow ends meanwhile, or at the timeout.
 */
async function waitForCandidate(client: RegistryClient, t: Trial, timeoutMs: number, quiet: boolean): Promise<void> {
  const what = `shadow ${t.id} of ${t.model} version ${t.version}`;
  const deadline = Date.now() + timeoutMs;
  let shown = '';
  for (;;) {
    const s = await call(client, client.getModelStatus, { model: t.model });
    if (s.shadow?.trial?.id !== t.id)
      throw new SightlineError('PRECONDITION', `${what} ended while waiting for its candidate to load`);
    const state = (r: ModelStatus['replicas'][number]) => r.versions.find((v) => v.version === t.version);
    const failed = s.replicas.filter((r) => state(r)?.state === VersionState.VERSION_STATE_FAILED);
    if (failed.length) {
      const where = failed.map((r) => `${r.replica} (${state(r)!.error})`).join(', ');
      throw new SightlineError(
        'PRECONDITION',
        `${what}: the candidate failed to load on ${where}; the shadow keeps running: stop it with \`shadow stop ${t.model}\``,
      );
    }
    const warm = s.replicas.filter((r) => WARM.has(state(r)?.state ?? VersionState.VERSION_STATE_UNSPECIFIED));
    const line = `${what}: warm on ${warm.length}/${s.replicas.length} replica(s)`;
    if (!quiet && line !== shown) console.log((shown = line));
    if (s.replicas.length > 0 && warm.length === s.replicas.length) return;
    if (Date.now() >= deadline)
      throw new SightlineError(
        'DEADLINE',
        `${what}: not warm on every replica within ${timeoutMs / 1000} s (${line.slice(what.length + 2)}); the shadow keeps running`,
      );
    await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
  }
}

/** Streams a YOLO folder (images with their labels, and the class names) to UploadDataset. */
async function uploadDataset(client: RegistryClient, name: string, dir: string, notes: string): Promise<Dataset> {
  const ds = await loadYoloDataset(dir);
  const rel = (p: string) => relative(dir, p).split(sep).join('/');
  const files = ds.images
    .flatMap((i) => [i.path, ...(i.labelPath ? [i.labelPath] : [])])
    .map((p) => ({ abs: p, path: rel(p) }));
  for (const f of NAMES_FILES) {
    const abs = `${dir}${sep}${f}`;
    if (
      await readFile(abs).then(
        () => true,
        () => false,
      )
    ) {
      files.push({ abs, path: f });
      break;
    }
  }
  return new Promise<Dataset>((resolve, reject) => {
    const stream = client.uploadDataset((err, res) => (err ? reject(err) : resolve(res!)));
    const send = async (m: DatasetUploadChunk) => {
      if (!stream.write(m)) await new Promise((r) => stream.once('drain', r));
    };
    void (async () => {
      await send({ metadata: { name, notes } });
      for (const f of files) {
        const bytes = await readFile(f.abs);
        await send({ path: f.path });
        for (let o = 0; o < bytes.length; o += CHUNK_BYTES) await send({ data: bytes.subarray(o, o + CHUNK_BYTES) });
      }
      stream.end();
    })().catch((e: unknown) => {
      reject(e); // first: cancelling answers the call with CANCELLED
      stream.cancel();
    });
  });
}

export function datasetCommand(): Command {
  const cmd = new Command('dataset').description(
    'golden datasets (YOLO format, as validate reads them) stored in the registry, for evaluate',
  );
  common(
    cmd
      .command('upload <name> <dir>')
      .description(
        'upload a YOLO-format folder (images/, labels/, classes.txt or data.yaml) as a new version of a dataset',
      ),
  )
    .option('--notes <text>', 'what the dataset is: source, how it was labelled', '')
    .action(
      action(async (client, name: string, dir: string, o: Common & { notes: string }) => {
        assertReadableDir('dataset folder', dir);
        const d = await uploadDataset(client, name, dir, o.notes);
        print(o.json, d, () =>
          console.log(
            `${d.created ? 'uploaded' : 'already stored:'} dataset ${d.name} version ${d.version}: ` +
              `${d.images} images, ${d.boxes} boxes, ${d.classNames.length} class names, ` +
              `${(Number(d.sizeBytes) / 1e6).toFixed(1)} MB (sha256 ${d.sha256})`,
          ),
        );
      }),
    );
  common(cmd.command('list [name]').description('stored datasets and their versions')).action(
    action(async (client, name: string | undefined, o: Common) => {
      const r = await call(client, client.listDatasets, { name: name ?? '' });
      print(o.json, r.datasets, () => {
        if (!r.datasets.length) console.log('no datasets');
        for (const d of r.datasets)
          console.log(
            `${d.name}@${d.version}  ${d.sha256.slice(0, 12)}  ${d.images} images  ` +
              `${d.boxes} boxes  ${(Number(d.sizeBytes) / 1e6).toFixed(1)} MB  ` +
              `${d.createdAt} by ${d.createdBy}${d.notes ? `  ${d.notes}` : ''}`,
          );
      });
    }),
  );
  return cmd;
}

export function evaluateCommand(): Command {
  return common(
    new Command('evaluate')
      .argument('<model>')
      .argument('<version>')
      .description(
        'score a version on a stored golden dataset with the serving pipeline; the result is kept with the version',
      ),
  )
    .requiredOption('--dataset <name[@version]>', 'the dataset (default: its latest version)', datasetRef)
    .action(
      action(async (client, model: string, version: string, o: Common & { dataset: ReturnType<typeof datasetRef> }) => {
        const e = await call(client, client.evaluate, { model, version: intArg(version), ...o.dataset });
        print(o.json, e, () => {
          console.log(`${model} version ${version} on ${e.dataset}@${e.datasetVersion} in ${e.seconds.toFixed(1)} s:`);
          printEvaluation(e, '  ');
        });
      }),
    );
}

export function shadowCommand(): Command {
  const cmd = new Command('shadow').description(
    'run a candidate version on a share of live requests beside the active one, off the critical path, and compare',
  );
  common(
    cmd
      .command('start <model> <version>')
      .description('load the version on every replica and compare it with the active version on sampled live requests'),
  )
    .option(
      '--sample <share>',
      "share of the active version's requests also run on the candidate: a fraction in (0, 1] (0.1) or a percent (10%)",
      sampleArg,
      0.1,
    )
    .option('--reason <text>', 'recorded in the audit log', '')
    .option(
      '--wait [timeout]',
      'return once every replica holds the candidate warm (requests sampled before are dropped as not_loaded); ' +
        'exit 1 naming a replica that failed to load it, or when TIMEOUT (90s, 5m; default 2m) passes first',
      durationArg,
    )
    .action(
      action(
        async (
          client,
          model: string,
          version: string,
          o: Common & { sample: number; reason: string; wait?: true | number },
        ) => {
          let r = await call(client, client.startShadow, {
            model,
            version: intArg(version),
            sample: o.sample,
            reason: o.reason,
          });
          if (o.wait) {
            await waitForCandidate(client, r.trial!, typeof o.wait === 'number' ? o.wait : SHADOW_WAIT_MS, !!o.json);
            r = await call(client, client.getShadowReport, { model });
          }
          print(o.json, shadowJson(r), () => printShadow(r));
        },
      ),
    );
  common(
    cmd.command('stop <model>').description('end the shadow; replicas unload the candidate unless a pointer needs it'),
  )
    .option('--reason <text>', 'recorded in the audit log', '')
    .action(
      action(async (client, model: string, o: Common & { reason: string }) => {
        const r = await call(client, client.stopShadow, { model, reason: o.reason });
        print(o.json, shadowJson(r), () => printShadow(r));
      }),
    );
  common(
    cmd
      .command('report <model>')
      .description(
        'the running (or latest) shadow summed over replicas: samples, agreement, per-class differences, latency',
      ),
  ).action(
    action(async (client, model: string, o: Common) => {
      const r = await call(client, client.getShadowReport, { model });
      print(o.json, shadowJson(r), () => printShadow(r));
    }),
  );
  return cmd;
}

export function canaryCommand(): Command {
  const cmd = new Command('canary').description(
    'a canary is started by promote --canary and finished by promote; stop ends it by hand',
  );
  common(
    cmd.command('stop <model>').description('end the running canary: the active version serves every request again'),
  )
    .option('--reason <text>', 'recorded in the audit log', '')
    .action(
      action(async (client, model: string, o: Common & { reason: string }) => {
        const s = await call(client, client.stopCanary, { model, reason: o.reason });
        print(o.json, { model: s.model, activeVersion: s.activeVersion }, () =>
          console.log(`model ${s.model}: canary stopped; version ${s.activeVersion} serves every request`),
        );
      }),
    );
  return cmd;
}
