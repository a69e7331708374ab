#!/usr/bin/env node
// Removes onnxruntime-node's binaries for other platforms from node_modules (about 250 MB of macOS,
// Windows and other-architecture libraries), keeping linux/<arch> only. The Dockerfile runs it after
// `npm prune --omit=dev`; it refuses to remove anything if the binary for <arch> is missing.
//
// Usage: node scripts/prune-onnxruntime.mjs [arch] [node_modules dir]
//   arch: Docker's TARGETARCH (amd64, arm64) or Node's process.arch (x64, arm64); default: this machine.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ARCH = { amd64: 'x64', x86_64: 'x64', x64: 'x64', arm64: 'arm64', aarch64: 'arm64' };
const given = process.argv[2] || process.arch;
const arch = ARCH[given];
if (!arch) {
  console.error(`prune-onnxruntime: unsupported architecture "${given}" (onnxruntime-node ships linux x64 and arm64)`);
  process.exit(2);
}
const modules = resolve(process.argv[3] || 'node_modules');
const binRoot = join(modules, 'onnxruntime-node', 'bin');
if (!existsSync(binRoot)) {
  console.error(`prune-onnxruntime: ${binRoot} not found`);
  process.exit(1);
}
const napiDirs = readdirSync(binRoot).filter((d) => d.startsWith('napi-v'));
for (const napi of napiDirs) {
  if (!existsSync(join(binRoot, napi, 'linux', arch, 'onnxruntime_binding.node'))) {
    console.error(
      `prune-onnxruntime: ${join(binRoot, napi, 'linux', arch)} has no onnxruntime_binding.node; nothing removed`,
    );
    process.exit(1);
  }
}
const removed = [];
for (const napi of napiDirs) {
  for (const os of readdirSync(join(binRoot, napi))) {
    for (const cpu of readdirSync(join(binRoot, napi, os))) {
      if (os === 'linux' && cpu === arch) continue;
      rmSync(join(binRoot, napi, os, cpu), { recursive: true, force: true });
      removed.push(`${napi}/${os}/${cpu}`);
    }
    if (readdirSync(join(binRoot, napi, os)).length === 0)
      rmSync(join(binRoot, napi, os), { recursive: true, force: true });
  }
}
console.log(`prune-onnxruntime: kept linux/${arch}; removed ${removed.length ? removed.join(', ') : 'nothing'}`);
