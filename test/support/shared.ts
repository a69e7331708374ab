/**
 * Locates ../shared (models, images, datasets; see its DATA.md). Never copy those files into the
 * repository. A suite that needs them and cannot find them says so loudly; under CI=true it fails.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
/** Repository root: this file compiles to dist/test/support/shared.js. */
export const repoRoot = resolve(here, '..', '..', '..');
export const sharedDir = resolve(process.env.SIGHTLINE_SHARED_DIR ?? join(repoRoot, '..', 'shared'));

export const sharedPath = (...parts: string[]): string => join(sharedDir, ...parts);
export const modelPath = (name: string): string => sharedPath('models', name);
export const imagePath = (name: string): string => sharedPath('images', name);
export const coco128Dir = sharedPath('datasets', 'coco128');
export const cocoLabelsFile = sharedPath('datasets', 'coco128', 'classes.txt');

/**
 * True when `path` (default: the shared folder) exists. Otherwise: under CI=true throws, so the run
 * fails; locally prints a loud message naming the variable to set and returns false (the caller skips).
 */
export function sharedPresent(who: string, path: string = sharedDir): boolean {
  if (existsSync(path)) return true;
  const msg = `shared test data not found at ${path}; set SIGHTLINE_SHARED_DIR to the folder described by DATA.md`;
  if (process.env.CI === 'true') throw new Error(`${who}: ${msg}`);
  console.error(`SKIPPING ${who}: ${msg}`);
  return false;
}

/** Per test: skips `t` (loudly) when the shared data is missing; under CI=true fails instead. */
export function requireShared(t: TestContext, ...parts: string[]): boolean {
  if (sharedPresent(t.name, parts.length ? sharedPath(...parts) : sharedDir)) return true;
  t.skip('shared test data not found');
  return false;
}
