/**
 * Child process for security-encryption.test.ts: rotates the blobs of <dataDir> from key <fromHex|->
 * to key <toHex>, printing "done <n>" after each blob, until the parent SIGKILLs it. Run with no
 * arguments (a test runner picking it up) it does nothing.
 */
import { rotateBlobKey } from '../../src/registry/index.js';

async function main(dataDir: string, fromHex: string, toHex: string): Promise<void> {
  process.stdout.write('ready\n');
  await rotateBlobKey(dataDir, {
    from: fromHex === '-' ? null : Buffer.from(fromHex, 'hex'),
    to: Buffer.from(toHex, 'hex'),
    onBlob: (e) => {
      process.stdout.write(`done ${e.index}\n`);
    },
  });
  process.stdout.write('finished\n');
}

const [dataDir, fromHex, toHex] = process.argv.slice(2);
if (dataDir && fromHex && toHex) {
  main(dataDir, fromHex, toHex).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  });
}
