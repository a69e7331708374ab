/**
 * Builds the frozen Config from, lowest precedence first: defaults ← file (YAML or JSON) ← environment
 * (SIGHTLINE_SECTION__KEY, e.g. SIGHTLINE_POOL__MAX_QUEUE=16) ← overrides (CLI flags). The only module
 * that reads process.env for configuration.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { SightlineError } from '../errors.js';
import { cpuBudget, type CpuBudget } from './cpus.cjs';
import { ConfigSchema, type Config } from './schema.js';
import { sizePool, uvThreadpoolSize } from './sizing.js';

type Tree = Record<string, unknown>;

const isTree = (v: unknown): v is Tree => typeof v === 'object' && v !== null && !Array.isArray(v);

export function deepMerge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    out[k] = isTree(v) && isTree(out[k]) ? deepMerge(out[k] as Tree, v) : v;
  }
  return out;
}

export function readConfigFile(path: string): Tree {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SightlineError('INVALID_INPUT', `cannot read config file ${path}: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new SightlineError(
      'INVALID_INPUT',
      `config file ${path} is not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}`,
    );
  }
  if (parsed == null) return {};
  if (!isTree(parsed))
    throw new SightlineError('INVALID_INPUT', `config file ${path} must hold an object at the top level`);
  return parsed;
}

const snakeToCamel = (s: string): string => s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * SIGHTLINE_* variables that are not configuration: the config file's path, the CLI clients' token,
 * and the test suite's own settings. Anything else under the prefix must be a config key (a typo is
 * refused at start-up instead of being silently ignored).
 */
const NOT_CONFIG = /^SIGHTLINE_(CONFIG|TOKEN|SHARED_DIR|TEST_[A-Z0-9_]*|FUZZ_[A-Z0-9_]*)$/;

/** SIGHTLINE_POOL__MAX_QUEUE=16 → { pool: { maxQueue: 16 } }. Values are parsed as JSON when they can be. */
export function envToTree(env: NodeJS.ProcessEnv, prefix = 'SIGHTLINE_'): Tree {
  const out: Tree = {};
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(prefix) || raw === undefined) continue;
    const path = name.slice(prefix.length).split('__').map(snakeToCamel);
    if (path.length === 0 || path.some((p) => p === '')) continue;
    if (NOT_CONFIG.test(name)) continue;
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      /* plain string */
    }
    let node = out;
    for (const p of path.slice(0, -1)) node = (node[p] = isTree(node[p]) ? node[p] : {}) as Tree;
    node[path[path.length - 1]!] = value;
  }
  return out;
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

export interface LoadConfigOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  overrides?: Tree;
  /** The CPUs to size 'auto' pool settings for (default: what this process may use). */
  cpus?: CpuBudget;
}

/** Validates everything at once and lists every problem, with its path, in one error. */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  let tree: Tree = {};
  if (opts.file) tree = deepMerge(tree, readConfigFile(opts.file));
  tree = deepMerge(tree, envToTree(opts.env ?? process.env));
  if (opts.overrides) tree = deepMerge(tree, opts.overrides);
  const r = ConfigSchema.safeParse(tree);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `  ${i.path.join('.') || '(root)'}: ${i.message}`).join('\n');
    throw new SightlineError('INVALID_INPUT', `invalid configuration:\n${problems}`);
  }
  const { pool, sizing } = sizePool(r.data.pool, opts.cpus ?? cpuBudget(), uvThreadpoolSize(process.env));
  return deepFreeze({ ...r.data, pool, sizing });
}
