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
  return new Command('sightline')
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
}

export async function runCli(argv: string[]): Promise<void> {
  await buildCli().parseAsync(argv);
}
