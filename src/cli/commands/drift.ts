/**
 * `sightline drift NAME`: the drift report of a model version on a running server, and
 * `sightline registry profile NAME VERSION --images DIR`: build a version's reference profile from a
 * calibration image set (registered under `registry` in registry.ts).
 */
import { Presets, SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { readdir, readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import {
  DriftVerdict,
  MonitoringClient,
  ProfileSource,
  type ClassCount,
  type DriftReport as ProtoDriftReport,
  type ProfileSummary,
} from '../../generated/sightline/v1/monitoring.js';
import {
  formatReport,
  type DriftReport,
  type FeatureName,
  type Summary,
  type Verdict,
} from '../../monitoring/index.js';
import { SightlineError } from '../../errors.js';
import { IMAGE_EXTENSIONS } from '../../inference/index.js';
import { assertReadableDir, intArg } from '../args.js';
import { call, connectionOptions, monitoringClient, type ConnectionFlags } from '../client.js';
import { reportError } from '../errors.js';

interface Common extends ConnectionFlags {
  json?: boolean;
}

export const verdictName = (v: DriftVerdict): Verdict | 'unspecified' =>
  (DriftVerdict[v] ?? 'DRIFT_VERDICT_UNSPECIFIED').replace('DRIFT_VERDICT_', '').toLowerCase() as
    Verdict | 'unspecified';

export const sourceName = (s: ProfileSource): string =>
  (ProfileSource[s] ?? 'PROFILE_SOURCE_NONE').replace('PROFILE_SOURCE_', '').toLowerCase();

const NO_SUMMARY: Summary = { n: 0, mean: NaN, std: NaN, p05: NaN, p50: NaN, p95: NaN, min: NaN, max: NaN };

const counts = (classes: readonly ClassCount[], side: 'reference' | 'current'): Record<string, number> =>
  Object.fromEntries(classes.filter((c) => c[side] > 0).map((c) => [String(c.classId), c[side]]));

/** The wire report as monitoring's DriftReport, so the table is the one formatReport prints. */
export function fromProtoReport(r: ProtoDriftReport): DriftReport {
  const t = r.thresholds ?? { psiWarning: 0, psiDrift: 0, alpha: 0, minSamples: 0 };
  const cm = r.classMix ?? { classes: [], verdict: DriftVerdict.DRIFT_VERDICT_INSUFFICIENT_DATA };
  const v = (x: DriftVerdict): Verdict => {
    const n = verdictName(x);
    return n === 'unspecified' ? 'insufficient_data' : n;
  };
  return {
    windowSize: r.windowSize,
    capacity: r.windowCapacity,
    referenceSize: r.profile?.size ?? 0,
    thresholds: { psiWarning: t.psiWarning, psiDrift: t.psiDrift, alpha: t.alpha, minSamples: t.minSamples },
    features: r.features.map((f) => ({
      feature: f.name as FeatureName,
      reference: f.reference ?? NO_SUMMARY,
      current: f.current ?? NO_SUMMARY,
      psi: f.psi ?? null,
      ks: f.ks ?? null,
      psiNoise: f.psiNoise ?? null,
      pValue: f.pValue ?? null,
      verdict: v(f.verdict),
    })),
    classMix: {
      reference: counts(cm.classes, 'reference'),
      current: counts(cm.classes, 'current'),
      psi: cm.psi ?? null,
      chiSquare: cm.chiSquare ?? null,
      dof: cm.dof ?? null,
      pValue: cm.pValue ?? null,
      verdict: v(cm.verdict),
    },
    verdict: v(r.verdict),
  };
}

/** JSON for scripts: enum names in lower case, NaN as null, bigints as numbers. */
export function reportJson(r: ProtoDriftReport): unknown {
  return {
    ...r,
    profile: r.profile ? { ...r.profile, source: sourceName(r.profile.source) } : undefined,
    features: r.features.map((f) => ({ ...f, verdict: verdictName(f.verdict) })),
    classMix: r.classMix ? { ...r.classMix, verdict: verdictName(r.classMix.verdict) } : undefined,
    verdict: verdictName(r.verdict),
    anomalies: Number(r.anomalies),
  };
}

export function formatDriftReport(r: ProtoDriftReport): string {
  const p = r.profile;
  const head = `model ${r.model} version ${r.version}: `;
  if (!p || p.source === ProfileSource.PROFILE_SOURCE_NONE) {
    return (
      `${head}no reference profile yet: collecting a traffic profile, ` +
      `${p?.collected ?? 0}/${p?.target ?? 0} requests (or build one: ` +
      `sightline registry profile ${r.model} ${r.version} --images DIR)`
    );
  }
  const lines = [
    `${head}${sourceName(p.source)} reference profile of ${p.size} images (${p.createdAt}); ${Number(r.anomalies)} anomalous request(s)`,
    formatReport(fromProtoReport(r)),
  ];
  const top = [...(r.classMix?.classes ?? [])]
    .sort((a, b) => b.reference + b.current - (a.reference + a.current))
    .slice(0, 8);
  if (top.length)
    lines.push(
      `top classes (reference / current detections): ${top.map((c) => `${c.label || c.classId} ${c.reference}/${c.current}`).join(', ')}`,
    );
  return lines.join('\n');
}

const printJson = (v: unknown) =>
  process.stdout.write(JSON.stringify(v, (_, x: unknown) => (typeof x === 'bigint' ? Number(x) : x), 2) + '\n');

export function driftCommand(): Command {
  return connectionOptions(
    new Command('drift')
      .description(
        'drift report of a model version on a running server: per feature reference vs current, PSI, KS and a verdict',
      )
      .argument('<model>', 'model name')
      .option('--version <n>', 'model version (default: the active version)', intArg, 0),
  )
    .option('--json', 'print JSON for scripts')
    .action(async (model: string, o: Common & { version: number }) => {
      const client = monitoringClient(o.server, o);
      try {
        const r = await call(client, client.getDriftReport, { model, version: o.version });
        if (o.json) printJson(reportJson(r));
        else console.log(formatDriftReport(r));
      } catch (e) {
        reportError(e, o.server);
      } finally {
        client.close();
      }
    });
}

/** Image files directly in dir, sorted by name. */
export async function listImages(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && IMAGE_EXTENSIONS.has(extname(e.name).toLowerCase()))
    .map((e) => e.name)
    .sort();
}

/** Streams the images to BuildProfile, one per message, with flow control. */
export async function buildProfile(
  client: MonitoringClient,
  target: { model: string; version: number },
  dir: string,
  files: readonly string[],
  onProgress: (sent: number) => void = () => undefined,
): Promise<ProfileSummary> {
  let settle!: { resolve: (s: ProfileSummary) => void; reject: (e: unknown) => void };
  const done = new Promise<ProfileSummary>((resolve, reject) => (settle = { resolve, reject }));
  let finished = false;
  const stream = client.buildProfile((err, res) => {
    finished = true;
    if (err) settle.reject(err);
    else settle.resolve(res!);
  });
  const send = async () => {
    stream.write({ target });
    let sent = 0;
    for (const name of files) {
      if (finished) return; // the server answered early (an error): stop sending
      const data = await readFile(join(dir, name));
      if (!stream.write({ image: { data, name } })) await new Promise((r) => stream.once('drain', r));
      onProgress(++sent);
    }
    stream.end();
  };
  send().catch((e: unknown) => {
    stream.cancel();
    settle.reject(e);
  });
  return done;
}

const fmt = (v: number) => (Number.isNaN(v) ? '-' : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toFixed(3));

export function formatProfileSummary(s: ProfileSummary): string {
  const lines = [
    `model ${s.model} version ${s.version}: ${sourceName(s.source)} reference profile of ${s.size} images stored (${s.bins} bins, ${s.createdAt})` +
      (s.skipped ? `; ${s.skipped} image(s) skipped` : ''),
    ...s.skippedReasons.map((r) => `  skipped ${r}`),
  ];
  const rows = [['feature', 'mean', 'std', 'p05', 'p50', 'p95']];
  for (const f of s.features) {
    const x = f.summary ?? NO_SUMMARY;
    rows.push([f.name, fmt(x.mean), fmt(x.std), fmt(x.p05), fmt(x.p50), fmt(x.p95)]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  lines.push(
    ...rows.map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    ),
  );
  const top = [...s.classes].sort((a, b) => b.reference - a.reference).slice(0, 8);
  if (top.length)
    lines.push(`top classes (detections): ${top.map((c) => `${c.label || c.classId} ${c.reference}`).join(', ')}`);
  return lines.join('\n');
}

/** `sightline registry profile NAME VERSION --images DIR`. */
export function profileCommand(): Command {
  return connectionOptions(
    new Command('profile')
      .description(
        "build a version's reference profile for drift monitoring from a calibration image set (every image file in DIR)",
      )
      .argument('<model>', 'model name')
      .argument('<version>', 'model version (0: the active version); it must be loaded on the server')
      .requiredOption('--images <dir>', 'folder of calibration images (jpg, png, webp, gif, tiff, avif)'),
  )
    .option('--json', 'print JSON for scripts')
    .action(async (model: string, version: string, o: Common & { images: string }) => {
      const client = monitoringClient(o.server, o);
      let bar: SingleBar | null = null;
      try {
        assertReadableDir('--images', o.images);
        const files = await listImages(o.images);
        if (!files.length)
          throw new SightlineError(
            'INVALID_INPUT',
            `--images ${o.images}: no image files (${[...IMAGE_EXTENSIONS].join(', ')})`,
          );
        bar =
          process.stderr.isTTY && !o.json
            ? new SingleBar(
                { format: 'profile [{bar}] {value}/{total} images', hideCursor: true },
                Presets.shades_classic,
              )
            : null;
        bar?.start(files.length, 0);
        const s = await buildProfile(client, { model, version: intArg(version) }, o.images, files, (n) =>
          bar?.update(n),
        );
        bar?.stop();
        bar = null;
        if (o.json) printJson({ ...s, source: sourceName(s.source) });
        else console.log(formatProfileSummary(s));
      } catch (e) {
        bar?.stop();
        reportError(e, o.server);
      } finally {
        client.close();
      }
    });
}
