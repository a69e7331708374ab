/** `sightline registry ...`: manage model versions on a running server over gRPC. */
import { Presets, SingleBar } from 'cli-progress';
import { Command, InvalidArgumentError, Option } from 'commander';
import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';
import { SightlineError } from '../../errors.js';
import { FAMILY_NAMES } from '../../identifiers.js';
import type {
  ModelVersion,
  PromoteRequest,
  RegistryClient,
  RolloutOptions,
} from '../../generated/sightline/v1/registry.js';
import { assertReadableFile, durationArg, intArg, readFileArg } from '../args.js';
import { call } from '../client.js';
import { profileCommand } from './drift.js';
import {
  canaryCommand,
  datasetCommand,
  evaluateCommand,
  evaluationLine,
  percentArg,
  printEvaluation,
  shadowCommand,
} from './evidence.js';
import { action, common, print, type Common } from './registry-common.js';
import { printStatus, statusJson, waitForRollout } from './rollout.js';

const CHUNK_BYTES = 1024 * 1024;

/** `--wait [TIMEOUT]` and `--auto-rollback` of promote and rollback. */
interface RolloutFlags {
  reason: string;
  /** true: wait with the registry's default timeout; a number: with this one (ms). */
  wait?: true | number;
  autoRollback?: boolean;
}

const rolloutFlags = (c: Command) =>
  c
    .option('--reason <text>', 'recorded in the history', '')
    .option(
      '--wait [timeout]',
      'follow the rollout until every replica serves the version, printing ready/total; ' +
        'exit 1 naming the replicas that failed, or when TIMEOUT (90s, 5m; default: ' +
        "the registry's fleet.rolloutTimeoutMs) passes first",
      durationArg,
    )
    .option(
      '--auto-rollback',
      'if the rollout fails (a replica cannot load the version, or the timeout passes), move the pointers back',
    );

const rolloutOptions = (o: RolloutFlags): RolloutOptions => ({
  timeoutMs: typeof o.wait === 'number' ? o.wait : 0,
  autoRollback: !!o.autoRollback,
});

/** promote's gates and canary. */
interface PromoteFlags extends RolloutFlags {
  canary?: number;
  canaryMinSamples?: number;
  canaryP99Margin?: number;
  canaryErrorMargin?: number;
  require: string[];
  force?: boolean;
}

const collect = (v: string, all: string[]) => [...all, v];
const marginArg = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative number, got "${v}"`);
  return n;
};
const errorMarginArg = (v: string) => {
  const n = marginArg(v);
  if (n > 1) throw new InvalidArgumentError(`expected a share of requests in [0, 1] (0.01: one point), got "${v}"`);
  return n;
};

const promoteOptions = (o: PromoteFlags): Pick<PromoteRequest, 'canary' | 'gates'> => ({
  gates: { require: o.require, force: !!o.force },
  canary:
    o.canary === undefined
      ? undefined
      : {
          percent: o.canary,
          minSamples: o.canaryMinSamples ?? 0,
          p99Margin: o.canaryP99Margin,
          errorRateMargin: o.canaryErrorMargin,
        },
});

/** One version in a line, then its latest evaluation per dataset (with per-class AP when `detail`). */
function printVersion(v: ModelVersion, detail = false): void {
  console.log(
    `${v.model} v${v.version}  ${v.sha256.slice(0, 12)}  ` +
      `${(Number(v.sizeBytes) / 1e6).toFixed(1)} MB  ${v.family} ` +
      `${v.inputWidth}x${v.inputHeight}  ${v.classNames.length} classes  ` +
      `${v.createdAt}${v.corrupt ? `  CORRUPT: ${v.corruptReason}` : ''}${v.sourceName ? `  (${v.sourceName})` : ''}`,
  );
  for (const e of v.evaluations) {
    if (detail) printEvaluation(e, '  ');
    else console.log(`  ${evaluationLine(e)}`);
  }
}

/** Uploads FILE, or standard input for "-" (kubectl exec -i POD -- sightline registry upload - … < model.onnx). */
function upload(
  client: RegistryClient,
  file: string,
  o: Common & { model: string; notes: string; labels?: string; family?: string; sha256?: string },
): Promise<ModelVersion> {
  const stdin = file === '-';
  // Paths first: a wrong one is reported in one line (exit 2) before the upload starts.
  if (!stdin) assertReadableFile('model file', file);
  const labels = o.labels
    ? readFileArg('--labels', o.labels)
        .toString('utf8')
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter(Boolean)
    : [];
  const bar =
    process.stderr.isTTY && !o.json && !stdin
      ? new SingleBar(
          { format: 'upload [{bar}] {percentage}% | {value}/{total} bytes', hideCursor: true },
          Presets.shades_classic,
        )
      : null;
  bar?.start(stdin ? 0 : statSync(file).size, 0);
  return new Promise<ModelVersion>((resolve, reject) => {
    const stream = client.uploadVersion((err, res) => {
      bar?.stop();
      if (err) reject(err);
      else resolve(res!);
    });
    stream.write({
      metadata: {
        model: o.model,
        notes: o.notes,
        expectedSha256: o.sha256 ?? '',
        labels,
        family: o.family ?? '',
        sourceName: stdin ? '' : basename(file),
      },
    });
    let sent = 0;
    const rs: NodeJS.ReadableStream = stdin ? process.stdin : createReadStream(file, { highWaterMark: CHUNK_BYTES });
    rs.on('data', (chunk) => {
      sent += chunk.length;
      bar?.update(sent);
      // Respect HTTP/2 flow control: pause the file while gRPC's buffer is full.
      if (!stream.write({ data: chunk as Buffer })) {
        rs.pause();
        stream.once('drain', () => rs.resume());
      }
    });
    rs.on('end', () => stream.end());
    rs.on('error', (e) => {
      stream.cancel();
      reject(e);
    });
  });
}

export function registryCommand(): Command {
  const cmd = new Command('registry').description(
    'manage model versions on a running server (upload, promote, rollback, ...)',
  );

  common(
    cmd
      .command('upload <file>')
      .description('upload a model file (- for standard input) as a new version; prints the version number'),
  )
    .requiredOption('--model <name>', 'model name')
    .option('--notes <text>', 'model card: training data, metrics, intended use', '')
    .option('--labels <file>', 'class names, one per line')
    .addOption(new Option('--family <family>', 'output layout, instead of detecting it').choices([...FAMILY_NAMES]))
    .option('--sha256 <hex>', 'refuse the upload unless the file has this sha256')
    .action(
      action(
        async (
          client,
          file: string,
          o: Common & { model: string; notes: string; labels?: string; family?: string; sha256?: string },
        ) => {
          const v = await upload(client, file, o);
          print(o.json, v, () =>
            console.log(
              `${v.created ? 'uploaded' : 'already registered:'} ${v.model} version ${v.version} (sha256 ${v.sha256})`,
            ),
          );
        },
      ),
    );

  common(cmd.command('list').description('models with their active and rollback versions')).action(
    action(async (client, o: Common) => {
      const r = await call(client, client.listModels, {});
      print(o.json, r.models, () => {
        if (!r.models.length) console.log('no models');
        for (const m of r.models)
          console.log(
            `${m.name}: active ${m.activeVersion || '-'}, rollback ${m.rollbackVersion || '-'}, ${m.versionCount} version(s)`,
          );
      });
    }),
  );

  common(
    cmd.command('versions <model>').description('versions of a model, each with its latest evaluation per dataset'),
  ).action(
    action(async (client, model: string, o: Common) => {
      const r = await call(client, client.listVersions, { model });
      print(o.json, r.versions, () => r.versions.forEach((v) => printVersion(v)));
    }),
  );

  common(
    cmd
      .command('show <model> <version>')
      .description('one version with its model card and its evaluations (per-class AP)'),
  ).action(
    action(async (client, model: string, version: string, o: Common) => {
      const v = await call(client, client.getVersion, { model, version: intArg(version) });
      print(o.json, v, () => {
        printVersion(v, true);
        if (v.notes) console.log(`notes: ${v.notes}`);
      });
    }),
  );

  common(
    cmd
      .command('status <model>')
      .description('pointers, every replica with its versions and their state, and the latest rollout'),
  ).action(
    action(async (client, model: string, o: Common) => {
      const s = await call(client, client.getModelStatus, { model });
      print(o.json, statusJson(s), () => printStatus(s));
    }),
  );

  rolloutFlags(
    common(
      cmd
        .command('promote <model> <version>')
        .description(
          'make a version active (every replica loads and warms it, then swaps), if its gates pass; or start a canary of it',
        ),
    ),
  )
    .option(
      '--require <gate>',
      'a gate the stored evidence must pass, beside the configured ones; repeatable: ' +
        'map50_95>=active-0.005, agreement>=0.9, p99<=1.2*active (README, ' +
        '"Promoting with evidence")',
      collect,
      [],
    )
    .option('--force', 'promote even if gates fail (audited as forced)')
    .option(
      '--canary <percent>',
      'instead of promoting, serve this share of the requests that name no version with the ' +
        'version (10%), on every replica; promote again without it to finish',
      percentArg,
    )
    .option(
      '--canary-min-samples <n>',
      "requests per arm before the canary is judged (default: the registry's canary.minSamples)",
      intArg,
    )
    .option(
      '--canary-p99-margin <x>',
      "roll back when the canary's p99 exceeds (1 + x) × the baseline's (default: canary.p99Margin)",
      marginArg,
    )
    .option(
      '--canary-error-margin <x>',
      "roll back when its error rate exceeds the baseline's + x, in [0, 1] (default: canary.errorRateMargin)",
      errorMarginArg,
    )
    .action(
      action(async (client, model: string, version: string, o: Common & PromoteFlags) => {
        if (o.canary !== undefined && o.wait)
          throw new SightlineError(
            'INVALID_INPUT',
            '--wait follows a rollout, and a canary starts none: watch it with `sightline registry status`',
          );
        const s = await call(client, client.promote, {
          model,
          version: intArg(version),
          reason: o.reason,
          rollout: rolloutOptions(o),
          ...promoteOptions(o),
        });
        if (o.wait) return waitForRollout(client, s, o.json);
        print(o.json, statusJson(s), () => printStatus(s));
      }),
    );

  rolloutFlags(
    common(cmd.command('rollback <model>').description('swap back to the rollback target, on every replica')),
  ).action(
    action(async (client, model: string, o: Common & RolloutFlags) => {
      const s = await call(client, client.rollback, { model, reason: o.reason, rollout: rolloutOptions(o) });
      if (o.wait) return waitForRollout(client, s, o.json);
      print(o.json, statusJson(s), () => printStatus(s));
    }),
  );

  common(cmd.command('history <model>').description('pointer changes, newest first'))
    .option('--limit <n>', 'entries', intArg, 100)
    .action(
      action(async (client, model: string, o: Common & { limit: number }) => {
        const r = await call(client, client.getHistory, { model, limit: o.limit });
        print(o.json, r.entries, () => {
          for (const h of r.entries)
            console.log(
              `${h.at}  ${h.action.padEnd(8)} ${h.fromVersion || '-'} -> ${h.toVersion || '-'}  by ${h.actor}${h.reason ? `: ${h.reason}` : ''}`,
            );
        });
      }),
    );

  common(
    cmd
      .command('delete <model> <version>')
      .description('delete a version that is neither active nor the rollback target'),
  )
    .option('--reason <text>', 'recorded in the history', '')
    .action(
      action(async (client, model: string, version: string, o: Common & { reason: string }) => {
        const r = await call(client, client.deleteVersion, { model, version: intArg(version), reason: o.reason });
        print(o.json, r, () =>
          console.log(
            `deleted ${model} version ${version}${r.blobRemoved ? '' : ' (file kept: another version uses it)'}`,
          ),
        );
      }),
    );
  cmd.addCommand(profileCommand());
  cmd.addCommand(datasetCommand());
  cmd.addCommand(evaluateCommand());
  cmd.addCommand(shadowCommand());
  cmd.addCommand(canaryCommand());
  return cmd;
}
