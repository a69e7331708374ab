/** sightline.v1.Monitoring handlers: adapters from gRPC calls to the DriftMonitor and calibration. */
import type { sendUnaryData, ServerReadableStream, ServerUnaryCall } from '@grpc/grpc-js';
import { SightlineError } from '../../errors.js';
import {
  DriftVerdict,
  ProfileSource,
  type ClassCount,
  type DriftReport,
  type FeatureSummary,
  type GetDriftReportRequest,
  type MonitoringServer,
  type ProfileImage,
  type ProfileSummary,
} from '../../generated/sightline/v1/monitoring.js';
import type { Summary, Verdict } from '../../monitoring/index.js';
import {
  calibrate,
  type AccessControl,
  type CalibrationImage,
  type CalibrationResult,
  type DetectService,
  type DriftMonitor,
  type DriftView,
} from '../../serving/index.js';
import type { Logger } from '../../telemetry/logger.js';
import { signalFor } from './deadline.js';
import { principalOf } from './auth.js';
import { splitHeadStream } from './head-stream.js';
import { toStatus } from './status.js';

const VERDICT: Record<Verdict, DriftVerdict> = {
  insufficient_data: DriftVerdict.DRIFT_VERDICT_INSUFFICIENT_DATA,
  stable: DriftVerdict.DRIFT_VERDICT_STABLE,
  warning: DriftVerdict.DRIFT_VERDICT_WARNING,
  drift: DriftVerdict.DRIFT_VERDICT_DRIFT,
};

const SOURCE = {
  calibration: ProfileSource.PROFILE_SOURCE_CALIBRATION,
  traffic: ProfileSource.PROFILE_SOURCE_TRAFFIC,
} as const;

const toSummary = (s: Summary): FeatureSummary => ({
  n: s.n,
  mean: s.mean,
  std: s.std,
  p05: s.p05,
  p50: s.p50,
  p95: s.p95,
  min: s.min,
  max: s.max,
});

/** `null` (not computed) becomes an absent optional field. */
const opt = (v: number | null): number | undefined => (v === null ? undefined : v);

function classCounts(
  reference: Readonly<Record<string, number>>,
  current: Readonly<Record<string, number>>,
  names: readonly string[],
): ClassCount[] {
  const ids = [...new Set([...Object.keys(reference), ...Object.keys(current)])].map(Number).sort((a, b) => a - b);
  return ids.map((id) => ({
    classId: id,
    label: names[id] ?? '',
    reference: reference[id] ?? 0,
    current: current[id] ?? 0,
  }));
}

export function toDriftReport(v: DriftView): DriftReport {
  const t = v.thresholds;
  const r = v.report;
  return {
    model: v.model,
    version: v.version,
    profile: v.profile
      ? { source: SOURCE[v.profile.source], size: v.profile.n, createdAt: v.profile.createdAt, collected: 0, target: 0 }
      : { source: ProfileSource.PROFILE_SOURCE_NONE, size: 0, createdAt: '', collected: v.collected, target: v.target },
    windowSize: v.windowSize,
    windowCapacity: v.windowCapacity,
    thresholds: { psiWarning: t.psiWarning, psiDrift: t.psiDrift, alpha: t.alpha, minSamples: t.minSamples },
    features: (r?.features ?? []).map((f) => ({
      name: f.feature,
      reference: toSummary(f.reference),
      current: toSummary(f.current),
      psi: opt(f.psi),
      psiNoise: opt(f.psiNoise),
      ks: opt(f.ks),
      pValue: opt(f.pValue),
      verdict: VERDICT[f.verdict],
    })),
    classMix: r
      ? {
          classes: classCounts(r.classMix.reference, r.classMix.current, v.names),
          psi: opt(r.classMix.psi),
          chiSquare: opt(r.classMix.chiSquare),
          dof: opt(r.classMix.dof),
          pValue: opt(r.classMix.pValue),
          verdict: VERDICT[r.classMix.verdict],
        }
      : { classes: [], verdict: DriftVerdict.DRIFT_VERDICT_INSUFFICIENT_DATA },
    verdict: VERDICT[r?.verdict ?? 'insufficient_data'],
    anomalies: BigInt(v.anomalies),
  };
}

export function toProfileSummary(r: CalibrationResult): ProfileSummary {
  const p = r.profile;
  return {
    model: r.model,
    version: r.version,
    source: SOURCE[p.source],
    size: p.n,
    skipped: r.skipped,
    skippedReasons: [...r.skippedReasons],
    createdAt: p.createdAt,
    bins: p.bins,
    features: Object.entries(p.features).map(([name, f]) => ({ name, summary: toSummary(f.summary) })),
    classes: classCounts(p.classMix, {}, r.names),
  };
}

/** The first message's target, then the images of the later ones. */
async function splitProfileStream(
  call: ServerReadableStream<ProfileImage, ProfileSummary>,
): Promise<{ model: string; version: number; images: AsyncIterable<CalibrationImage> }> {
  const { head, rest } = await splitHeadStream(
    call as AsyncIterable<ProfileImage>,
    (m) => m.target,
    (m): CalibrationImage => ({ data: m.image?.data ?? new Uint8Array(0), name: m.image?.name ?? '' }),
    { message: 'ProfileImage', head: 'target (model, version)' },
  );
  return { model: head.model, version: head.version, images: rest };
}

export function monitoringHandlers(
  detect: DetectService,
  monitor: DriftMonitor | undefined,
  log: Logger,
  access?: AccessControl,
): MonitoringServer {
  return {
    getDriftReport(call: ServerUnaryCall<GetDriftReportRequest, DriftReport>, cb: sendUnaryData<DriftReport>) {
      Promise.resolve()
        .then(() => {
          if (!monitor?.enabled)
            throw new SightlineError(
              'PRECONDITION',
              'drift monitoring is disabled on this server (drift.enabled: false)',
            );
          // Resolving first means only loaded versions ever get monitoring state, whatever clients ask.
          const v = detect.resolve(call.request.model, call.request.version);
          return toDriftReport(monitor.view(v.model, v.version, v.names));
        })
        .then(
          (r) => cb(null, r),
          (e: unknown) => cb(toStatus(e, log)),
        );
    },

    buildProfile(call: ServerReadableStream<ProfileImage, ProfileSummary>, cb: sendUnaryData<ProfileSummary>) {
      const { signal, dispose } = signalFor(call);
      let target = '';
      // A stored reference profile is a registry change: audited like the others.
      const audit = (outcome: 'ok' | 'error', reason = '') =>
        access?.record(principalOf(call), call.getPeer(), 'profile', target, outcome, reason);
      splitProfileStream(call)
        .then(({ model, version, images }) => {
          target = `${model}@${version || 'active'}`;
          if (!monitor) throw new SightlineError('PRECONDITION', 'drift monitoring is not available on this server');
          // A replica stores the profile in the registry as the caller, whose token the registry checks.
          const authorization = call.metadata.get('authorization')[0]?.toString();
          return calibrate(detect, monitor, { model, version }, images, signal, { authorization });
        })
        .then(
          (r) => {
            audit('ok');
            cb(null, toProfileSummary(r));
          },
          (e: unknown) => {
            audit('error', (e as Error).message);
            cb(toStatus(e, log));
          },
        )
        .finally(dispose);
    },
  };
}
