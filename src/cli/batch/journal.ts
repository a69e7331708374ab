/**
 * The results file of `sightline batch`: one JSON object per line and image, appended as each answer
 * arrives. Each line is written with one write(2), so an interrupted run leaves complete lines; a line
 * cut short by a crash of the machine is dropped on the next run, which then skips every image already
 * in the file.
 */
import { closeSync, existsSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs';
import type { Detection } from '../../inference/index.js';

/** One line: the image path, then the Detect answer (as `sightline detect --json` prints it). */
export interface ResultLine {
  image: string;
  model: string;
  version: string;
  imageWidth: number;
  imageHeight: number;
  detections: Detection[];
  [k: string]: unknown;
}

/** Reads the lines already written (dropping a trailing incomplete one from the file). */
export function readJournal(path: string): ResultLine[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const lines: ResultLine[] = [];
  let validEnd = 0;
  for (let start = 0; start < text.length;) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) break; // an incomplete last line
    const line = text.slice(start, nl);
    try {
      const v = JSON.parse(line) as ResultLine;
      if (typeof v.image !== 'string' || !Array.isArray(v.detections)) throw new Error('not a result line');
      lines.push(v);
    } catch {
      break; // keep what precedes a damaged line
    }
    start = nl + 1;
    validEnd = Buffer.byteLength(text.slice(0, start));
  }
  if (validEnd < Buffer.byteLength(text)) truncateSync(path, validEnd);
  return lines;
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
