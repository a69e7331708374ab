/** Fails the run under CI=true, skips loudly otherwise, when ../shared is missing. */
import { existsSync } from 'node:fs';
import { sharedDir } from './shared.js';

export function sharedDataOrSkip(suite: string): boolean {
  if (existsSync(sharedDir)) return true;
  const msg = `shared test data not found at ${sharedDir} (set SIGHTLINE_SHARED_DIR)`;
  if (process.env.CI === 'true') throw new Error(`${suite}: ${msg}`);
  console.error(`\n*** SKIPPING ${suite}: ${msg} ***\n`);
  return false;
}
