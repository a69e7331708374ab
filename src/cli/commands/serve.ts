/** `sightline serve`: start the server; SIGTERM/SIGINT drain gracefully, a second signal exits at once. */
import { setLogger } from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { basename, extname } from 'node:path';
import { loadConfig, SERVER_ROLES, type ServerRole } from '../../config/index.js';
import { SightlineError } from '../../errors.js';
import { FAMILY_NAMES } from '../../identifiers.js';
import { assertOnnxModel } from '../../inference/index.js';
import { startSightline } from '../../main.js';
import { createLogger } from '../../telemetry/logger.js';
import { assertReadableFile, intArg, readFileArg } from '../args.js';
import { describeError, reportError } from '../errors.js';

/** How long a second signal waits for running inferences before the process exits. */
const IMMEDIATE_EXIT_WAIT_MS = 3000;

interface ServeFlags {
  role?: ServerRole;
  registry?: string;
  dataDir?: string;
  model?: string;
  name?: string;
  labels?: string;
  family?: (typeof FAMILY_NAMES)[number];
  config?: string;
  port?: number;
  host?: string;
  workers?: number;
  threads?: number;
  logLevel?: string;
  adminPort?: number;
  httpPort?: number;
}

/** A model file to serve: readable, and an ONNX model (a protobuf ModelProto with a graph). */
function assertModelFile(what: string, path: string): void {
  try {
    assertOnnxModel(readFileArg(what, path));
  } catch (e) {
    if (e instanceof SightlineError && e.code === 'INVALID_INPUT') throw e;
    throw new SightlineError(
      'INVALID_INPUT',
      `${what} ${path}: ${describeError(e)}: give an ONNX model file (.onnx, as exported for inference)`,
      { path },
      { cause: e },
    );
  }
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('start the gRPC server (config: --config file, then SIGHTLINE_* environment, then these flags)')
    .addOption(
      new Option(
        '--role <role>',
        'all: registry + inference in one process; registry; inference (follows --registry)',
      ).choices([...SERVER_ROLES]),
    )
    .option('--registry <addr>', 'role inference: the registry to follow (host:port)')
    .option('--data-dir <dir>', 'registry database and model files (default ./registry)')
    .option('--model <file>', 'ONNX model to serve')
    .option('--name <name>', 'name clients use for --model (default: the file name without .onnx)')
    .option('--labels <file>', 'class names, one per line (default: from the model metadata)')
    .addOption(new Option('--family <family>', 'output layout, instead of detecting it').choices([...FAMILY_NAMES]))
    .option('--config <file>', 'YAML or JSON config file', process.env.SIGHTLINE_CONFIG)
    .option('--port <n>', 'gRPC port (default 50051)', intArg)
    .option('--host <addr>', 'address to bind (default 127.0.0.1)')
    .option('--workers <n>', 'inference worker threads', intArg)
    .option('--threads <n>', 'ONNX Runtime intra-op threads per worker', intArg)
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent')
    .option('--admin-port <n>', 'admin HTTP port: /metrics, /healthz, /readyz (default 9464)', intArg)
    .option(
      '--http-port <n>',
      'HTTP port: Open Inference Protocol REST and /v1/detect (default 8000); turns it on (http.enabled)',
      intArg,
    )
    .action(async (f: ServeFlags) => {
      // Only flags actually given override the file and the environment.
      const defined = (o: Record<string, unknown>) =>
        Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
      const overrides: Record<string, unknown> = {
        role: f.role,
        registry: defined({ address: f.registry, dataDir: f.dataDir }),
        grpc: defined({ port: f.port, host: f.host }),
        pool: defined({ workers: f.workers, intraOpThreads: f.threads }),
        log: defined({ level: f.logLevel }),
        admin: defined({ port: f.adminPort }),
        http: f.httpPort === undefined ? {} : { enabled: true, port: f.httpPort },
      };
      if (f.model) {
        overrides.models = [
          defined({
            name: f.name ?? basename(f.model, extname(f.model)),
            path: f.model,
            labels: f.labels,
            family: f.family,
          }),
        ];
      }
      const config = loadConfig({ file: f.config, overrides });
      // A wrong path or a file that is no ONNX model is the user's to fix: said in one line, before
      // anything starts or listens.
      if (config.role !== 'inference') {
        config.models.forEach((m, i) => {
          assertModelFile(f.model ? '--model' : `models[${i}].path`, m.path);
          if (m.labels) assertReadableFile(f.labels ? '--labels' : `models[${i}].labels`, m.labels);
        });
      }
      const log = createLogger(config.log.level);
      // grpc-js writes its own messages to stderr as plain text: keep them in the JSON log instead.
      const grpcLog =
        (level: 'warn' | 'debug') =>
        (...args: unknown[]) =>
          log[level]({ event: 'grpc_js' }, args.join(' '));
      setLogger({ error: grpcLog('warn'), info: grpcLog('debug'), debug: grpcLog('debug') });
      if (config.models.length === 0)
        log.warn(
          { event: 'no_models' },
          'no model configured (use --model FILE or models: in the config); Detect answers UNAVAILABLE',
        );
      const app = await startSightline(config, log);
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        if (++signals > 1) {
          log.warn(
            { event: 'shutdown_immediate', signal: sig },
            'second signal: exiting once the running inferences end (at most 3 s)',
          );
          // Exiting while a worker is inside ONNX Runtime aborts the process (SIGABRT): stop them first.
          const exit = () => process.exit(1);
          app.pool.close(IMMEDIATE_EXIT_WAIT_MS).then(exit, exit);
          setTimeout(exit, IMMEDIATE_EXIT_WAIT_MS + 1000).unref();
          return;
        }
        log.info({ event: 'signal', signal: sig }, `received ${sig}`);
        app.close().then(
          () => process.exit(0),
          (e: unknown) => {
            log.error({ err: e }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      try {
        await app.ready;
      } catch (e) {
        // Past the ports, still one line on stderr as for any mistake (errors.ts); the JSON log says
        // it too, with the stack only at debug.
        log.fatal({ event: 'startup_failed', reason: describeError(e) }, `startup failed: ${describeError(e)}`);
        log.debug({ event: 'startup_failed', err: e }, 'startup failure');
        await app.close(0);
        reportError(e);
        process.exit();
      }
      log.info({ event: 'serving', port: app.port, models: config.models.map((m) => m.name) }, 'serving');
    });
}
