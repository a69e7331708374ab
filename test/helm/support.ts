/**
 * Helpers for the chart tests: find helm, render the chart, parse and validate the manifests offline.
 *
 * helm comes from `node scripts/get-helm.mjs` (cached at .cache/helm/helm; .ci/run runs it), or from
 * HELM=/path/to/helm, or from PATH. Without it: under CI=true the tests fail, otherwise the suite is
 * skipped, in one line of the test report (helmSkip).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { repoRoot } from '../support/shared.js';

export const chartDir = join(repoRoot, 'helm', 'sightline');
export const productionValues = join(chartDir, 'values-production.yaml');

function runs(bin: string): boolean {
  const r = spawnSync(bin, ['version', '--short'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

function findHelm(): string | null {
  const candidates = [process.env.HELM, join(repoRoot, '.cache', 'helm', 'helm'), 'helm'].filter(
    (c): c is string => !!c,
  );
  for (const c of candidates) if ((c === 'helm' || existsSync(c)) && runs(c)) return c;
  return null;
}

export const helmBin = findHelm();

const HELM_MISSING =
  'helm not found (run `node scripts/get-helm.mjs`, or set HELM=/path/to/helm): the Helm chart is not tested';

/** The `skip` option of the chart suite: the reason without helm, except under CI=true, where its tests fail. */
export const helmSkip: string | false = helmBin || process.env.CI === 'true' ? false : HELM_MISSING;

/** The helm binary; without it (reached only under CI=true, see helmSkip) the test fails. */
export function needHelm(_t: TestContext): string | null {
  if (helmBin) return helmBin;
  throw new Error(HELM_MISSING);
}

export interface HelmResult {
  status: number | null;
  stdout: string;
  /** stderr without helm's notes about the symbolic links in files/ (they point into observability/). */
  stderr: string;
}

export function helm(bin: string, args: string[]): HelmResult {
  const r = spawnSync(bin, args, {
    cwd: repoRoot,
    encoding: 'utf8',
    timeout: 120_000,
    env: {
      ...process.env,
      HELM_CACHE_HOME: join(repoRoot, '.cache', 'helm', 'home'),
      HELM_CONFIG_HOME: join(repoRoot, '.cache', 'helm', 'home'),
      HELM_DATA_HOME: join(repoRoot, '.cache', 'helm', 'home'),
    },
  });
  const stderr = (r.stderr ?? '')
    .split('\n')
    .filter((l) => !/found symbolic link in path/.test(l))
    .join('\n')
    .trim();
  return { status: r.status, stdout: r.stdout ?? '', stderr };
}

export type Manifest = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [k: string]: any;
};

export const RELEASE = 'sl';
export const NAMESPACE = 'vision';

/** `helm template` with the given extra arguments; throws with helm's message when it fails. */
export function render(bin: string, ...extra: string[]): Manifest[] {
  const r = helm(bin, ['template', RELEASE, chartDir, '--namespace', NAMESPACE, ...extra]);
  if (r.status !== 0) throw new Error(`helm template ${extra.join(' ')} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

export function parseManifests(text: string): Manifest[] {
  const out: Manifest[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length)
      throw new Error(`rendered YAML does not parse: ${doc.errors.map((e) => e.message).join('; ')}`);
    const obj = doc.toJS() as Manifest | null;
    if (obj) out.push(obj);
  }
  return out;
}

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: any) => Validatable;

/** Kubernetes (and Prometheus Operator) schemas, by apiVersion/kind. */
export const MODELS: Record<string, ModelClass> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

/** Validates one manifest against its schema; throws naming the object and every problem. */
export function validateManifest(m: Manifest): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (!Model)
    throw new Error(`${m.apiVersion} ${m.kind} ${m.metadata?.name}: no schema known to the test (add it to MODELS)`);
  try {
    new Model(m).validate();
  } catch (e) {
    throw new Error(`${m.kind} ${m.metadata.name} does not match the Kubernetes schema: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

export const find = (ms: Manifest[], kind: string, name?: string): Manifest[] =>
  ms.filter((m) => m.kind === kind && (name === undefined || m.metadata.name === name));

export function one(ms: Manifest[], kind: string, name?: string): Manifest {
  const found = find(ms, kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  return found[0]!;
}

/** Workloads (Deployment, StatefulSet) of a render. */
export const workloads = (ms: Manifest[]): Manifest[] =>
  ms.filter((m) => m.kind === 'Deployment' || m.kind === 'StatefulSet');

/** Every container, init and ephemeral ones included, with its workload. */
export function containers(ms: Manifest[]): { workload: Manifest; container: any }[] {
  return workloads(ms).flatMap((w) => {
    const spec = w.spec.template.spec;
    return [...(spec.initContainers ?? []), ...spec.containers, ...(spec.ephemeralContainers ?? [])].map(
      (container) => ({ workload: w, container }),
    );
  });
}

/** A container's environment as a plain object (literal values only). */
export const envOf = (container: { env?: { name: string; value?: string }[] }): Record<string, string | undefined> =>
  Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
