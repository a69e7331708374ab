/**
 * Promotion gates: conditions a candidate version must meet before it replaces the active version,
 * judged from stored evidence only (the registry's evaluations and shadow tallies; nothing is run
 * during a promote). The syntax, `METRIC OP VALUE`:
 *
 *   map50_95>=active-0.005    map50>=0.5    p99<=1.2*active    agreement>=0.9    latency_ratio<=1.5
 *
 * OP is >=, <=, > or <; VALUE a number, `active` (the same metric of the active version), `active+N`,
 * `active-N` or `N*active`. Metrics: map50 and map50_95 (the latest evaluation of the candidate, and
 * the active version's evaluation on the same dataset version), p50 and p99 (that evaluation's
 * per-image latency, ms), agreement and agreement_p10 (the candidate's shadow against the active
 * version), latency_ratio (that shadow's candidate / active latency). Gates come from the
 * configuration (promotion.require, by model name, "*" for every model) and from the promote itself.
 */
import { SightlineError } from '../errors.js';
import type { EvaluationReport } from './evaluation.js';
import type { PromoteCheck } from './promote-check.js';
import type { ShadowSummary } from './trial-stats.js';

const GATE_METRICS = ['map50', 'map50_95', 'p50', 'p99', 'agreement', 'agreement_p10', 'latency_ratio'] as const;
export type GateMetric = (typeof GATE_METRICS)[number];

/** Shadow metrics already compare the candidate with the active version: they take numbers only. */
const SHADOW_METRICS: ReadonlySet<GateMetric> = new Set(['agreement', 'agreement_p10', 'latency_ratio']);

type Op = '>=' | '<=' | '>' | '<';

export interface Gate {
  readonly text: string;
  readonly metric: GateMetric;
  readonly op: Op;
  /** The value as written: "active-0.005". */
  readonly rhs: string;
  /** threshold = scale × (the active version's value) + offset; scale 0: a plain number. */
  readonly scale: number;
  readonly offset: number;
}

const NUM = String.raw`[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?`;
const GATE = new RegExp(String.raw`^([a-z0-9_]+)\s*(>=|<=|>|<)\s*(.+)$`);
const VALUE = [
  { re: new RegExp(`^(${NUM})$`), of: (m: RegExpExecArray) => ({ scale: 0, offset: Number(m[1]) }) },
  { re: /^active$/, of: () => ({ scale: 1, offset: 0 }) },
  {
    re: new RegExp(String.raw`^active\s*([+-])\s*(${NUM})$`),
    of: (m: RegExpExecArray) => ({ scale: 1, offset: (m[1] === '-' ? -1 : 1) * Number(m[2]) }),
  },
  {
    re: new RegExp(String.raw`^(${NUM})\s*\*\s*active$`),
    of: (m: RegExpExecArray) => ({ scale: Number(m[1]), offset: 0 }),
  },
  {
    re: new RegExp(String.raw`^active\s*\*\s*(${NUM})$`),
    of: (m: RegExpExecArray) => ({ scale: Number(m[1]), offset: 0 }),
  },
];

/** Parses one gate; INVALID_INPUT saying what is wrong with it. */
export function parseGate(text: string): Gate {
  const t = text.trim();
  const m = GATE.exec(t);
  const why = (s: string) => new SightlineError('INVALID_INPUT', `gate "${text}": ${s}`, { field: 'require' });
  if (!m) throw why('expected METRIC OP VALUE, e.g. map50_95>=active-0.005 (OP: >=, <=, >, <)');
  const metric = m[1] as GateMetric;
  if (!GATE_METRICS.includes(metric)) throw why(`unknown metric "${m[1]}"; one of ${GATE_METRICS.join(', ')}`);
  const rhs = m[3]!.trim();
  for (const v of VALUE) {
    const x = v.re.exec(rhs);
    if (!x) continue;
    const value = v.of(x);
    if (!Number.isFinite(value.offset) || !Number.isFinite(value.scale)) throw why(`"${rhs}" is not a finite number`);
    if (value.scale !== 0 && SHADOW_METRICS.has(metric))
      throw why(`${metric} is measured against the active version already: compare it with a number`);
    return { text: t, metric, op: m[2] as Op, rhs, ...value };
  }
  throw why(`"${rhs}" is not a number, active, active+N, active-N or N*active`);
}

/** What a promote is judged on: everything stored about the candidate beside the active version. */
export interface Evidence {
  readonly model: string;
  readonly version: number;
  /** The active version (null: none, nothing is replaced). */
  readonly active: number | null;
  /** The candidate's latest evaluation, and the active version's on the same dataset version. */
  readonly evaluation: {
    dataset: string;
    datasetVersion: number;
    candidate: EvaluationReport;
    active: EvaluationReport | null;
  } | null;
  /** The candidate's latest shadow against the active version, summed over replicas. */
  readonly shadow: { trialId: number; running: boolean; summary: ShadowSummary } | null;
}

type Measured = { value: number; reference: number | null; where: string } | { missing: string };

function measure(metric: GateMetric, ev: Evidence, minShadowSamples: number): Measured {
  if (SHADOW_METRICS.has(metric)) {
    const s = ev.shadow;
    if (!s)
      return {
        missing: `no shadow of version ${ev.version} against active version ${ev.active} (sightline registry shadow start ${ev.model} ${ev.version})`,
      };
    const where = `shadow ${s.trialId}, ${s.summary.samples} samples`;
    if (s.summary.samples < minShadowSamples)
      return {
        missing: `only ${s.summary.samples} shadow samples, fewer than promotion.minShadowSamples ${minShadowSamples}`,
      };
    if (metric === 'latency_ratio') {
      const l = s.summary.latency;
      return l
        ? { value: l.ratio, reference: null, where: `${where}, ${l.pairs} latency pairs` }
        : { missing: 'the shadow has no comparable latency pairs (live requests all ran on the latency session)' };
    }
    return {
      value: metric === 'agreement' ? s.summary.agreementMean! : s.summary.agreementP10!,
      reference: null,
      where,
    };
  }
  const e = ev.evaluation;
  if (!e)
    return {
      missing: `version ${ev.version} has no evaluation (sightline registry evaluate ${ev.model} ${ev.version} --dataset NAME)`,
    };
  const of = (r: EvaluationReport) =>
    ({ map50: r.map50, map50_95: r.map5095, p50: r.latency.p50Ms, p99: r.latency.p99Ms })[
      metric as 'map50' | 'map50_95' | 'p50' | 'p99'
    ];
  return {
    value: of(e.candidate),
    reference: e.active ? of(e.active) : null,
    where: `${e.dataset}@${e.datasetVersion}`,
  };
}

export interface GateResult {
  readonly gate: string;
  readonly passed: boolean;
  /** "map50_95 0.321 >= active-0.005 = 0.440 (coco128@1): failed", or why it could not be measured. */
  readonly detail: string;
  readonly value: number | null;
  readonly threshold: number | null;
}

const fmt = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(3));

export function checkGates(gates: readonly Gate[], ev: Evidence, minShadowSamples: number): GateResult[] {
  return gates.map((g) => {
    const m = measure(g.metric, ev, minShadowSamples);
    if ('missing' in m)
      return {
        gate: g.text,
        passed: false,
        detail: `${g.text}: cannot be checked: ${m.missing}`,
        value: null,
        threshold: null,
      };
    if (g.scale !== 0 && m.reference === null) {
      return {
        gate: g.text,
        passed: false,
        detail:
          `${g.text}: cannot be checked: active version ${ev.active} has no evaluation on ${m.where} ` +
          `(sightline registry evaluate ${ev.model} ${ev.active} --dataset ${m.where})`,
        value: m.value,
        threshold: null,
      };
    }
    const threshold = g.scale === 0 ? g.offset : g.scale * m.reference! + g.offset;
    const passed =
      g.op === '>='
        ? m.value >= threshold
        : g.op === '<='
          ? m.value <= threshold
          : g.op === '>'
            ? m.value > threshold
            : m.value < threshold;
    const rhs = g.scale === 0 ? '' : ` = ${fmt(threshold)}`;
    return {
      gate: g.text,
      passed,
      detail: `${g.metric} ${fmt(m.value)} ${g.op} ${g.rhs}${rhs} (${m.where}): ${passed ? 'passed' : 'failed'}`,
      value: m.value,
      threshold,
    };
  });
}

/** The evidence in one line, for the audit log and refusals. */
function describeEvidence(ev: Evidence): string {
  const parts: string[] = [];
  const e = ev.evaluation;
  const evalLine = (v: number | null, r: EvaluationReport) =>
    `v${v} map50 ${fmt(r.map50)} map50_95 ${fmt(r.map5095)} p99 ${fmt(r.latency.p99Ms)} ms`;
  if (e)
    parts.push(
      `evaluation on ${e.dataset}@${e.datasetVersion}: ${evalLine(ev.version, e.candidate)}${e.active ? `, active ${evalLine(ev.active, e.active)}` : ''}`,
    );
  else parts.push('no evaluation');
  const s = ev.shadow;
  if (s) {
    const sum = s.summary;
    parts.push(
      `shadow ${s.trialId} against v${ev.active}${s.running ? ' (running)' : ''}: ${sum.samples} samples` +
        (sum.agreementMean === null ? '' : `, agreement ${fmt(sum.agreementMean)} (p10 ${fmt(sum.agreementP10!)})`) +
        (sum.latency ? `, latency ratio ${fmt(sum.latency.ratio)}` : '') +
        (sum.droppedTotal ? `, ${sum.droppedTotal} dropped` : ''),
    );
  } else parts.push('no shadow');
  return `evidence: ${parts.join('; ')}`;
}

/** The `promotion` configuration section. */
export interface PromotionPolicy {
  /** Gates by model name; "*" for models without their own list. */
  readonly require: Readonly<Record<string, readonly string[]>>;
  /** Shadow gates need at least this many compared images. */
  readonly minShadowSamples: number;
}

/**
 * The registry's promote check for gates (ModelRegistry.addPromoteCheck): promotes that replace an
 * active version are judged on `evidence`; a failing gate refuses the promote with PRECONDITION naming
 * each one with its value, unless forced. Returns the evidence and the verdicts, for the audit entry.
 * Rollbacks are never gated. The configured gates are parsed here, so a bad one stops the start.
 */
export function promotionGates(
  evidence: (model: string, version: number) => Evidence,
  policy: PromotionPolicy,
): PromoteCheck {
  const configured = new Map(Object.entries(policy.require).map(([model, gates]) => [model, gates.map(parseGate)]));
  return async (model, version, ctx) => {
    if (ctx.action === 'rollback') return;
    const gates = [...(configured.get(model) ?? configured.get('*') ?? []), ...ctx.require.map(parseGate)];
    if (ctx.active === null || ctx.active === version)
      return gates.length ? 'no active version is replaced: gates not evaluated' : undefined;
    const ev = evidence(model, version);
    const results = checkGates(gates, ev, policy.minShadowSamples);
    const failed = results.filter((r) => !r.passed);
    if (failed.length > 0 && !ctx.force) {
      throw new SightlineError(
        'PRECONDITION',
        `promotion of ${model} version ${version} refused by ${failed.length} gate(s): ` +
          `${failed.map((f) => f.detail).join('; ')}; ${describeEvidence(ev)} (--force overrides)`,
        {
          model,
          version,
          gates: failed.map((f) => ({ gate: f.gate, value: f.value, threshold: f.threshold })),
        },
      );
    }
    const verdicts = results.length ? `gates: ${results.map((r) => r.detail).join('; ')}` : 'no gates';
    return `${failed.length ? `FORCED past ${failed.length} failed gate(s); ` : ''}${verdicts}; ${describeEvidence(ev)}`;
  };
}
