/**
 * A version as the wire carries it (text: DetectRequest.version, the Open Inference Protocol's
 * model_version, HTTP paths) ↔ the registry's number the server uses. One parse for every transport.
 */
import { SightlineError } from '../errors.js';
import type { DetectService } from '../serving/index.js';

/** Empty: the active version (0). Anything but a positive integer names no version: NOT_FOUND. */
export function parseVersion(model: string, text: string): number {
  if (text === '') return 0;
  const n = /^\d{1,9}$/.test(text) ? Number(text) : 0;
  if (n > 0) return n;
  const shown = JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
  throw new SightlineError(
    'NOT_FOUND',
    `${model ? `model "${model}"` : 'the default model'} has no version ${shown}: versions are numbers`,
    { model },
  );
}

/** Metric labels of a failed call: the version (model, text) resolves to now, or null (labelled "unknown"). */
export function labelsOf(
  detect: Pick<DetectService, 'labelsFor'>,
  model: string,
  text: string,
): { model: string; version: number } | null {
  try {
    return detect.labelsFor(model, parseVersion(model, text));
  } catch {
    return null;
  }
}
