/** Helpers for the observability tests: scrape and parse the Prometheus text format, call with metadata. */
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { detectRequest } from '../../src/cli/client.js';
import type { DetectorClient, DetectRequest, DetectResponse } from '../../src/generated/sightline/v1/detector.js';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Exposition {
  samples: Sample[];
  /** # TYPE per metric family. */
  types: Map<string, string>;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const t = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (t) types.set(t[1]!, t[2]!);
      continue;
    }
    const m = LINE.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(LABEL))
      labels[k!] = v!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    samples.push({ name: m[1]!, labels, value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw) });
  }
  return { samples, types };
}

export function pick(e: Exposition, name: string, match: Record<string, string> = {}): Sample[] {
  return e.samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

/** Sum of the matching samples' values (0 when none match). */
export function total(e: Exposition, name: string, match: Record<string, string> = {}): number {
  return pick(e, name, match).reduce((a, s) => a + s.value, 0);
}

export async function scrape(
  port: number,
): Promise<{ status: number; contentType: string | null; text: string; exposition: Exposition }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), text, exposition: parseExposition(text) };
}

export async function get(
  port: number,
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; body: string; contentType: string | null }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, init);
  return { status: res.status, body: await res.text(), contentType: res.headers.get('content-type') };
}

export interface CallResult {
  response?: DetectResponse;
  error?: ServiceError;
  /** The server's initial metadata (x-request-id). */
  headers: Metadata;
}

/** One Detect call with request metadata, resolving with the response or the error and the headers. */
export function detectCall(
  client: DetectorClient,
  req: Partial<DetectRequest>,
  md: Record<string, string> = {},
): Promise<CallResult> {
  const full = detectRequest(req);
  const metadata = new Metadata();
  for (const [k, v] of Object.entries(md)) metadata.set(k, v);
  return new Promise((resolve) => {
    let headers = new Metadata();
    const call = client.detect(full, metadata, {}, (err, res) =>
      resolve(err ? { error: err, headers } : { response: res!, headers }),
    );
    call.on('metadata', (m: Metadata) => (headers = m));
  });
}

/**
 * Metric names a PromQL expression reads (Grafana variables allowed), and the label names it uses in
 * matchers and grouping clauses. Good enough for the expressions we ship, not a PromQL parser.
 */
export function promqlNames(expr: string): { metrics: Set<string>; labels: Set<string> } {
  const labels = new Set<string>();
  let s = expr.replace(/\$__\w+|\$\{?\w+\}?/g, '5m');
  // Label matchers: {name op "value", …}
  s = s.replace(/\{([^}]*)\}/g, (_, body: string) => {
    for (const [, k] of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"/g)) labels.add(k!);
    return ' ';
  });
  // Grouping and matching clauses: by (...), without (...), on (...), ignoring (...), group_left (...).
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw: string, body: string) => {
    for (const l of body
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean))
      labels.add(l);
    return ' ';
  });
  s = s
    .replace(/"(?:[^"\\]|\\.)*"/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\boffset\s+\w+/g, ' ');
  const keywords = new Set([
    'by',
    'without',
    'on',
    'ignoring',
    'group_left',
    'group_right',
    'bool',
    'and',
    'or',
    'unless',
    'offset',
    'inf',
    'nan',
    'Inf',
    'NaN',
  ]);
  const metrics = new Set<string>();
  for (const m of s.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = m[0];
    const after = s.slice(m.index! + name.length);
    if (/^\s*\(/.test(after) || keywords.has(name)) continue;
    if (m.index! > 0 && /[0-9.]/.test(s[m.index! - 1]!)) continue; // 1e3, 5m
    metrics.add(name);
  }
  return { metrics, labels };
}
