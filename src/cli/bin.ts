#!/usr/bin/env node
import { SightlineError } from '../errors.js';
import { runCli } from './index.js';

runCli(process.argv).catch((e: unknown) => {
  // Configuration and usage errors are the user's to fix: print the message, not a stack.
  console.error(e instanceof SightlineError ? `sightline: ${e.message}` : e);
  process.exit(e instanceof SightlineError && e.code === 'INVALID_INPUT' ? 2 : 1);
});
