/**
 * Names every layer checks the same way: identifiers (model names, token names, profile kinds) and the
 * model families. The bottom of the layering with errors.ts, so config, registry, inference and serving
 * state each rule once.
 */
import { SightlineError } from './errors.js';

/** Identifiers appear in logs, metric labels and CLI output, and never become a path. */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export const IDENTIFIER_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit";

export function isIdentifier(s: unknown): s is string {
  return typeof s === 'string' && IDENTIFIER_PATTERN.test(s);
}

/** Throws INVALID_INPUT naming `what` ("model name", "profile kind") unless `s` is an identifier. */
export function assertIdentifier(s: unknown, what = 'model name'): asserts s is string {
  if (isIdentifier(s)) return;
  const shown = typeof s === 'string' ? JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s) : typeof s;
  throw new SightlineError('INVALID_INPUT', `invalid ${what} ${shown}: use ${IDENTIFIER_RULE}`, { field: what });
}

/** The output layouts Sightline decodes (inference/families/), in the order they are tried. */
export const FAMILY_NAMES = ['ultralytics', 'yolov5', 'yolox'] as const;
export type FamilyName = (typeof FAMILY_NAMES)[number];

export function isFamilyName(s: unknown): s is FamilyName {
  return typeof s === 'string' && (FAMILY_NAMES as readonly string[]).includes(s);
}
