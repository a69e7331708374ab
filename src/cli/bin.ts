#!/usr/bin/env node
import { reportError } from './errors.js';
import { runCli } from './index.js';

// `sightline audit --json | head`: the reader has gone, so stop quietly, as Unix filters do.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

runCli(process.argv).catch((e: unknown) => {
  reportError(e);
  process.exit();
});
