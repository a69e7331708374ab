/** Runs `sightline serve` as a separate process (for signals and crashes), on a free port. */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from './cli.js';

export interface ServedProcess {
  child: ChildProcess;
  address: string;
  exit: Promise<number | null>;
  /** Parsed JSON log lines so far. */
  logs: Record<string, unknown>[];
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

const START_TIMEOUT_MS = 60_000;

/** Starts `sightline serve ARGS` and resolves once it logs `serving` (or rejects if it exits first). */
export function serveProcess(args: string[], env: Record<string, string> = {}): Promise<ServedProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--admin-port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
  });
  const logs: Record<string, unknown>[] = [];
  const exit = new Promise<number | null>((r) => child.on('exit', (code, sig) => r(code ?? (sig ? -1 : null))));
  return new Promise((resolve, reject) => {
    let port = 0;
    let timer: NodeJS.Timeout | undefined;
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        let ev: Record<string, unknown>;
        try {
          ev = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        logs.push(ev);
        if (ev.event === 'grpc_listening') port = ev.port as number;
        if (ev.event === 'serving' || ev.event === 'not_ready') {
          clearTimeout(timer);
          resolve({
            child,
            address: `127.0.0.1:${port}`,
            exit,
            logs,
            kill: (signal = 'SIGKILL') => (child.kill(signal), exit),
          });
        }
      }
    });
    void exit.then((code) => reject(new Error(`server exited before serving (code ${code})`)));
    // A server that never says it is serving fails the test instead of hanging the suite.
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `server did not start serving within ${START_TIMEOUT_MS} ms; last log lines: ${JSON.stringify(logs.slice(-3))}`,
        ),
      );
    }, START_TIMEOUT_MS);
    timer.unref();
    void exit.finally(() => clearTimeout(timer));
  });
}
