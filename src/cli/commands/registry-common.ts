/** What every `sightline registry …` client command shares: its flags, its JSON output, and one-line errors. */
import type { Command } from 'commander';
import type { RegistryClient } from '../../generated/sightline/v1/registry.js';
import { connectionOptions, registryClient, type ConnectionFlags } from '../client.js';
import { reportError } from '../errors.js';

export interface Common extends ConnectionFlags {
  json?: boolean;
}

/** The connection flags and --json. */
export const common = (c: Command) => connectionOptions(c).option('--json', 'print JSON for scripts');

/** JSON for scripts: bigints become numbers (sizes and ids fit). */
export const print = (json: boolean | undefined, value: unknown, human: () => void) =>
  json
    ? process.stdout.write(JSON.stringify(value, (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v), 2) + '\n')
    : human();

/** Runs a client command; a failure is reported in one line (errors.ts). */
export function action<A extends unknown[]>(fn: (client: RegistryClient, ...args: A) => Promise<void>) {
  return async (...args: A) => {
    const opts = args.find((a): a is Common => typeof a === 'object' && a !== null && 'server' in a)!;
    let client: RegistryClient | null = null;
    try {
      client = registryClient(opts.server, opts);
      await fn(client, ...args);
    } catch (e) {
      reportError(e, opts.server);
    } finally {
      client?.close();
    }
  };
}
