/** The `sightline` command line: one subcommand per file in commands/. */
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { auditCommand, keyCommand, tokenCommand } from './commands/admin.js';
import { batchCommand } from './commands/batch.js';
import { detectCommand } from './commands/detect.js';
import { driftCommand } from './commands/drift.js';
import { registryCommand } from './commands/registry.js';
import { serveCommand } from './commands/serve.js';
import { validateCommand } from './commands/validate.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildCli(): Command {
  const program = new Command('sightline')
    .description('Sightline: gRPC object detection on ONNX Runtime')
    .version(pkg.version)
    // `sightline drift NAME --version 3`: options after a subcommand belong to it, not to the program.
    .enablePositionalOptions()
    .showHelpAfterError()
    .addCommand(serveCommand())
    .addCommand(detectCommand())
    .addCommand(batchCommand())
    .addCommand(validateCommand())
    .addCommand(registryCommand())
    .addCommand(driftCommand())
    .addCommand(tokenCommand())
    .addCommand(auditCommand())
    .addCommand(keyCommand());
  withLogLevel(program);
  usageExitStatus(program);
  return program;
}

/**
 * A mistake in the command line (an unknown option, a missing argument, a value its parser refuses)
 * exits with status 2, as every other mistake in the command does (errors.ts), not commander's 1;
 * --help and --version still exit 0.
 */
function usageExitStatus(cmd: Command): void {
  cmd.exitOverride((e) => {
    if (e.exitCode !== 0) process.exit(2);
  });
  for (const c of cmd.commands) usageExitStatus(c);
}

/** Every command takes --log-level (serve declares its own): at debug or trace an error prints its stack (errors.ts). */
function withLogLevel(cmd: Command): void {
  for (const c of cmd.commands) {
    if (c.commands.length) withLogLevel(c);
    else if (!c.options.some((o) => o.long === '--log-level'))
      c.option('--log-level <level>', 'debug or trace: print the stack of an error');
  }
}

export async function runCli(argv: string[]): Promise<void> {
  await buildCli().parseAsync(argv);
}
