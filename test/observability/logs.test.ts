/**
 * `sightline serve` as a real process: one JSON log line per call at debug with the request id, model,
 * version, status and duration (never image bytes), and the admin port announced in the logs.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { detectorClient } from '../../src/cli/client.js';
import type { DetectorClient } from '../../src/generated/sightline/v1/detector.js';
import { sharedDataOrSkip } from '../support/data.js';
import { waitFor } from '../support/wait.js';
import { serveProcess, type ServedProcess } from '../support/process.js';
import { tempDataDir } from '../support/server.js';
import { imagePath, modelPath } from '../support/shared.js';
import { detectCall, get } from './support.js';

const haveData = sharedDataOrSkip('observability logs');

describe('JSON logs of a served process', { skip: !haveData }, () => {
  let proc: ServedProcess;
  let client: DetectorClient;
  let dataDir: string;
  before(async () => {
    dataDir = tempDataDir();
    proc = await serveProcess(
      ['--model', modelPath('yolo11n_int8_320.onnx'), '--name', 'det', '--workers', '1', '--log-level', 'debug'],
      {
        SIGHTLINE_REGISTRY__DATA_DIR: dataDir,
        SIGHTLINE_POOL__WARMUP_RUNS: '1',
      },
    );
    client = detectorClient(proc.address);
  });
  after(async () => {
    client?.close();
    await proc?.kill('SIGTERM');
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a Detect logs one line with request id, model, version, status and duration, and no image', async () => {
    const bus = readFileSync(imagePath('bus.jpg'));
    const r = await detectCall(client, { image: bus }, { 'x-request-id': 'log-test-1' });
    assert.ok(r.response);
    const { value: line } = await waitFor(
      () => proc.logs.find((l) => l.event === 'detect' && l.requestId === 'log-test-1'),
      5000,
      'the detect log line',
    );
    assert.equal(line.level, 'debug');
    assert.equal(line.model, 'det');
    assert.equal(line.version, 1, 'versions are numbers in every log line, as the registry logs them');
    assert.equal(line.code, 0);
    assert.equal(line.detections, r.response.detections.length);
    assert.ok(typeof line.ms === 'number' && line.ms > 0);
    assert.ok(typeof line.time === 'string');

    const bad = await detectCall(
      client,
      { image: Buffer.from('not an image at all') },
      { 'x-request-id': 'log-test-2' },
    );
    assert.ok(bad.error);
    const { value: failed } = await waitFor(
      () => proc.logs.find((l) => l.requestId === 'log-test-2'),
      5000,
      'the failure log line',
    );
    assert.equal(failed.code, 3);
    assert.match(String(failed.err), /format|recogni/i);
    assert.equal(proc.logs.filter((l) => l.requestId === 'log-test-1').length, 1, 'one line per call');
    const all = JSON.stringify(proc.logs);
    assert.ok(!all.includes(bus.subarray(0, 64).toString('base64')), 'no image bytes in the logs');
    assert.ok(!all.includes('not an image at all'));
  });

  test('the admin port is announced and serves /metrics and /readyz', async () => {
    const admin = proc.logs.find((l) => l.event === 'admin_listening');
    assert.ok(admin, 'admin_listening logged');
    const port = admin.port as number;
    assert.ok(port > 0 && port !== 9464, '--admin-port 0 picked a free port');
    assert.equal((await get(port, '/readyz')).status, 200);
    const m = await get(port, '/metrics');
    assert.match(
      m.body,
      /^rpc_server_call_duration_seconds_count\{.*rpc_method="Detect".*sightline_model="det".*\} \d+$/m,
    );
  });
});
