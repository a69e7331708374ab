/** Runs the built `sightline` CLI (its launcher, as installed) as a child process. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './shared.js';

export const CLI = join(repoRoot, 'dist', 'src', 'cli', 'launch.cjs');

/** `input`: piped to the command's standard input. */
export function runCli(
  args: string[],
  opts: { timeoutMs?: number; input?: Buffer } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: [opts.input ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    if (opts.input) child.stdin!.end(opts.input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `sightline token create` on a registry data directory (the server may be running): the new token. */
export async function createToken(dataDir: string, name: string, role: string): Promise<string> {
  const r = await runCli(['token', 'create', '--name', name, '--role', role, '--json', '--data-dir', dataDir]);
  if (r.code !== 0) throw new Error(`token create ${name} exited ${r.code}: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { token: string }).token;
}
