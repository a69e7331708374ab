/**
 * The results file of `sightline batch`: one JSON object per line and image, appended as each answer
 * arrives. Each line is written with one write(2), so an interrupted run leaves complete lines; a last
 * line cut short by a crash of the machine is dropped on the next run, which then skips every image
 * already in the file. A file that is not such a journal is refused, never truncated. Every line records
 * the settings it was made with, and a run with other settings refuses to add to it.
 */
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import { SightlineError } from '../../errors.js';
import type { Detection } from '../../inference/index.js';

/**
 * The flags that change the answers, as given (null: the server's default). Which model answered is in
 * each line already (model, version, modelSha256), and checked apart (checkSameModel).
 */
export interface BatchSettings {
  conf: number | null;
  iou: number | null;
  maxDet: number | null;
  classes: number[] | null;
  agnostic: boolean;
}

/** One line: the image path, the Detect answer (as `sightline detect --json` prints it), and the settings. */
export interface ResultLine {
  image: string;
  model: string;
  version: string;
  modelSha256: string;
  imageWidth: number;
  imageHeight: number;
  detections: Detection[];
  settings: BatchSettings;
  [k: string]: unknown;
}

/** Every line starts so (JSON.stringify keeps the key order of `{ image, ... }`). */
const LINE_START = '{"image":';

const isResultLine = (v: unknown): v is ResultLine =>
  typeof v === 'object' &&
  v !== null &&
  typeof (v as ResultLine).image === 'string' &&
  Array.isArray((v as ResultLine).detections);

/** How messages name a journal: `what` ("--out results.jsonl"), and `file`, its path as given. */
export interface JournalName {
  what: string;
  file: string;
}

/** Reads the lines already in `path`. Drops a damaged last line (a crash mid-write); refuses a file that is something else. */
export function readJournal(path: string, { what }: JournalName): ResultLine[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const foreign = (why: string) =>
    new SightlineError(
      'INVALID_INPUT',
      `${what} exists and is not a results file of sightline batch (${why}): give another --out, or move that file away`,
    );
  if (text.length && !text.startsWith(LINE_START)) throw foreign('its first line is not a result line');
  const lines: ResultLine[] = [];
  for (let start = 0; start < text.length;) {
    const nl = text.indexOf('\n', start);
    let line: unknown = null;
    try {
      line = nl < 0 ? null : JSON.parse(text.slice(start, nl));
    } catch {
      // damaged: dropped below when it is the last line
    }
    if (!isResultLine(line)) {
      // Only the last line can be torn by a crash; anything damaged before more lines is not ours.
      if (nl >= 0 && text.slice(nl + 1).trim()) throw foreign(`line ${lines.length + 1} is not a result line`);
      truncateSync(path, Buffer.byteLength(text.slice(0, start)));
      break;
    }
    lines.push(line);
    start = nl + 1;
  }
  return lines;
}

const SETTING_FLAGS: Record<keyof BatchSettings, string> = {
  conf: '--conf',
  iou: '--iou',
  maxDet: '--max-det',
  classes: '--classes',
  agnostic: '--agnostic',
};

const show = (k: keyof BatchSettings, v: unknown) =>
  v === null
    ? `no ${SETTING_FLAGS[k]} (the server's default)`
    : typeof v === 'boolean'
      ? `${v ? '' : 'no '}${SETTING_FLAGS[k]}`
      : `${SETTING_FLAGS[k]} ${String(v)}`;

const startFresh = (file: string) => `give another --out (or delete ${file}) to start fresh`;

/** Throws unless the lines already written were made with `settings` (so results never mix). */
export function checkSettings(
  lines: readonly ResultLine[],
  settings: BatchSettings,
  { what, file }: JournalName,
): void {
  const first = lines[0];
  if (!first) return;
  if (typeof first.settings !== 'object' || first.settings === null)
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} holds results without recorded settings (an older sightline batch, or sightline detect --json): ${startFresh(file)}`,
    );
  const keys = Object.keys(SETTING_FLAGS) as (keyof BatchSettings)[];
  const differ = keys.filter((k) => JSON.stringify(first.settings[k] ?? null) !== JSON.stringify(settings[k] ?? null));
  if (differ.length)
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} holds results made with ${differ.map((k) => show(k, first.settings[k] ?? null)).join(', ')}; this run has ${differ
        .map((k) => show(k, settings[k]))
        .join(', ')}: rerun with the same settings to resume, or ${startFresh(file)}`,
    );
}

/** Which model made an answer: its name, version and the sha256 of its file. */
export interface ModelIdentity {
  model: string;
  version: string;
  modelSha256: string;
}

const modelOf = (r: ModelIdentity) => `${r.model} v${r.version} (sha256 ${r.modelSha256.slice(0, 12)})`;

/**
 * Throws unless `answer` came from the model that made `earlier` (a line already in the file, or this
 * run's first answer): a promotion or a canary mid-run would mix two models' results.
 */
export function checkSameModel(earlier: ModelIdentity, answer: ModelIdentity, { what, file }: JournalName): void {
  if (modelOf(earlier) === modelOf(answer)) return;
  throw new SightlineError(
    'INVALID_INPUT',
    `${what} holds results of model ${modelOf(earlier)}, but the server now answers with ${modelOf(answer)}: ` +
      `pin the version with --version ${earlier.version} to go on, or ${startFresh(file)}`,
  );
}

export class Journal {
  private readonly fd: number;

  constructor(path: string) {
    this.fd = openSync(path, 'a');
  }

  append(line: ResultLine): void {
    writeSync(this.fd, JSON.stringify(line) + '\n');
  }

  close(): void {
    closeSync(this.fd);
  }
}
