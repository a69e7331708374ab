#!/usr/bin/env node
/**
 * The `sightline` command. Sizes libuv's thread pool (sharp's decoding, file and crypto work run on it)
 * for the CPUs this process may use, then loads the CLI. It has to happen here, in CommonJS, before
 * any ES module is loaded: loading one already starts the pool, and libuv reads UV_THREADPOOL_SIZE
 * only once, when it starts it. An explicit UV_THREADPOOL_SIZE wins; so does SIGHTLINE_POOL__CPUS.
 */
import { cpuBudget } from '../config/cpus.cjs';

if (!process.env.UV_THREADPOOL_SIZE) {
  const configured = Number(process.env.SIGHTLINE_POOL__CPUS);
  const cpus = Number.isInteger(configured) && configured > 0 ? configured : cpuBudget().cpus;
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, cpus));
}
void import('./bin.js');
