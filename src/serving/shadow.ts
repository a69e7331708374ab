/**
 * Shadow runs on a serving process: a sampled share of the live requests answered by a model's active
 * version is also run on the shadow's candidate version, and the two answers are compared
 * (eval/compare.ts) into this server's tally, which travels to the registry with its reports.
 *
 * Strictly off the critical path: offer() is called once the live answer exists and only schedules the
 * run (setImmediate, so the answer is written first); the run uses idle capacity only
 * (pool.runBackground: no admission ticket, never ahead of live work, never on the latency session)
 * and is dropped, counted, when there is none. A candidate failing never touches the live answer.
 */
import { SightlineError } from '../errors.js';
import { compareDetections } from '../eval/index.js';
import {
  detectImage,
  type Detection,
  type ImagePrep,
  type ImageRequest,
  type InferencePool,
} from '../inference/index.js';
import type { Logger } from '../telemetry/logger.js';
import type { Metrics } from '../telemetry/metrics.js';
import type { TrialRef } from './model-change.js';
import type { Catalog, ModelManager, ServingVersion } from './models.js';
import { addComparison, addDrop, type DropReason, type ShadowTally } from './trial-stats.js';
import type { TrialTallies } from './trial-tallies.js';

/** The `shadow` configuration section. */
export interface ShadowSettings {
  /** A shadow image that found no idle worker within this is dropped (reason expired). */
  maxWaitMs: number;
}

/** The live request and its answer, as the shadow run needs them. */
export interface LiveAnswer {
  readonly model: string;
  readonly version: number;
  readonly image: Uint8Array;
  /** The live request's decoding and NMS settings: the candidate answers the same question. */
  readonly request: ImageRequest;
  readonly detections: readonly Detection[];
  /** Decode, preprocessing, inference and postprocessing of the live run (waiting excluded), ms. */
  readonly serviceMs: number;
  /** It ran on a one-thread session, as every shadow run does: only then are the two latencies compared. */
  readonly narrow: boolean;
}

export interface ShadowRunnerDeps {
  models: ModelManager;
  catalog: Catalog;
  pool: InferencePool;
  tallies: TrialTallies;
  prep: ImagePrep;
  settings: ShadowSettings;
  log: Logger;
  metrics?: Metrics;
  /** Sampling; tests inject a sequence. */
  random?: () => number;
}

/** A failing candidate is logged at most this often per trial. */
const FAILURE_LOG_INTERVAL_MS = 60_000;

const serviceMs = (t: { decodeMs: number; preprocessMs: number; inferenceMs: number; postprocessMs: number }) =>
  t.decodeMs + t.preprocessMs + t.inferenceMs + t.postprocessMs;

export class ShadowRunner {
  private readonly random: () => number;
  private readonly failureLoggedAt = new Map<number, number>();
  private readonly never = new AbortController().signal;

  constructor(private readonly deps: ShadowRunnerDeps) {
    this.random = deps.random ?? Math.random;
  }

  /** Samples a live answer of a model's active version for its shadow, if it has one; returns at once. */
  offer(live: LiveAnswer): void {
    const trial = this.deps.catalog.model(live.model)?.shadow;
    if (!trial || this.deps.models.activeVersion(live.model)?.version !== live.version) return;
    if (this.random() >= trial.share) return;
    const tally = this.deps.tallies.shadow(trial.id, live.model);
    setImmediate(() => void this.run(trial, tally, live));
  }

  private async run(trial: TrialRef, tally: ShadowTally, live: LiveAnswer): Promise<void> {
    const { models, pool, metrics } = this.deps;
    const pair = { model: live.model, version: String(live.version), candidate: String(trial.version) };
    const drop = (reason: DropReason) => {
      addDrop(tally, reason);
      metrics?.countShadow(pair, reason);
    };
    // Before spending anything on the image.
    const busy = pool.backgroundRefusal();
    if (busy) return drop(busy);
    let candidate: ServingVersion;
    try {
      candidate = models.acquire(live.model, trial.version);
    } catch {
      return drop('not_loaded');
    }
    try {
      const r = await detectImage(
        pool,
        candidate.key,
        candidate.info,
        live.image,
        this.deps.prep,
        live.request,
        this.never,
        undefined,
        { maxWaitMs: this.deps.settings.maxWaitMs },
      );
      const cmp = compareDetections(live.detections, r.detections);
      const latency = live.narrow ? { activeMs: live.serviceMs, candidateMs: serviceMs(r.timing) } : null;
      addComparison(tally, cmp, latency);
      metrics?.observeShadowSample(pair, cmp, latency, candidate.info.names);
    } catch (e) {
      const reason = e instanceof SightlineError ? e.fields.dropped : undefined;
      if (reason === 'busy' || reason === 'expired') return drop(reason);
      tally.failed++;
      metrics?.countShadow(pair, 'failed');
      this.logFailure(trial, live, e as Error);
    } finally {
      models.release(candidate);
    }
  }

  private logFailure(trial: TrialRef, live: LiveAnswer, e: Error): void {
    const now = Date.now();
    if (now - (this.failureLoggedAt.get(trial.id) ?? 0) < FAILURE_LOG_INTERVAL_MS) return;
    this.failureLoggedAt.set(trial.id, now);
    this.deps.log.warn(
      { event: 'shadow_failed', model: live.model, version: live.version, candidate: trial.version, err: e.message },
      `model ${live.model}: shadow candidate version ${trial.version} failed on a live image (the live answer was sent): ${e.message}`,
    );
  }
}
