// Generates TypeScript from proto/ with ts-proto into src/generated (git-ignored: the .proto files
// are the single source of truth, and protoc ships in the `protoc` npm package, so every build can
// regenerate deterministically).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const out = join(root, 'src', 'generated');
const protoDir = join(root, 'proto');
const files = [];
const walk = (d) => {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.proto')) files.push(p.slice(protoDir.length + 1));
  }
};
walk(protoDir);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const bin = (n) => join(root, 'node_modules', '.bin', n);
const protoc = (includeDir, protoFiles) =>
  execFileSync(
    bin('protoc'),
    [
      `--plugin=protoc-gen-ts_proto=${bin('protoc-gen-ts_proto')}`,
      `--ts_proto_out=${out}`,
      '--ts_proto_opt=outputServices=grpc-js,esModuleInterop=true,env=node,importSuffix=.js,forceLong=bigint,useOptionals=messages,useDate=false',
      `-I${includeDir}`,
      ...protoFiles,
    ],
    { stdio: 'inherit', cwd: root },
  );
protoc(protoDir, files);
// Typed client for grpc.health.v1 (used by the CLI and tests); the server side is grpc-health-check.
protoc(join(root, 'node_modules', 'grpc-health-check', 'proto'), ['health/v1/health.proto']);
console.log(`generated ${files.length + 1} proto file(s) into src/generated`);
