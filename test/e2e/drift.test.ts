/**
 * Drift monitoring end to end on a real server: a calibration profile built over gRPC from the first 64
 * coco128 images (BuildProfile), then Detect traffic of the other 64 unchanged (stable), darkened
 * (brightness drift) and greyscaled (saturation drift), each on a fresh server over the same registry, so
 * the stored profile is read back from the registry. The report agrees with the gauges on /metrics; a
 * version without a calibration set gets a traffic profile; an extreme image counts as an anomaly.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import sharp from 'sharp';
import { buildProfile, formatDriftReport } from '../../src/cli/commands/drift.js';
import { monitoringClient } from '../../src/cli/client.js';
import { call } from '../../src/cli/client.js';
import {
  DriftVerdict,
  ProfileSource,
  type DriftReport,
  type FeatureDrift,
  type MonitoringClient,
} from '../../src/generated/sightline/v1/monitoring.js';
import { pick, scrape } from '../observability/support.js';
import { runCli } from '../support/cli.js';
import { sharedDataOrSkip } from '../support/data.js';
import { startTestServer, tempDataDir, type TestServer } from '../support/server.js';
import { coco128Dir, modelPath } from '../support/shared.js';

const haveData = sharedDataOrSkip('drift e2e');
const IMAGES = join(coco128Dir, 'images', 'train2017');
const MODEL = 'det';
const TRAFFIC_PROFILE_SIZE = 32;

const serverConfig = (dataDir: string) => ({
  registry: { dataDir },
  models: [{ name: MODEL, path: modelPath('yolo11n_int8_320.onnx') }],
  pool: { workers: 2, warmupRuns: 1, maxQueue: 256 },
  drift: { updateIntervalMs: 200, trafficProfileSize: TRAFFIC_PROFILE_SIZE },
});

interface Running {
  srv: TestServer;
  mon: MonitoringClient;
}

async function start(dataDir: string): Promise<Running> {
  const srv = await startTestServer(serverConfig(dataDir));
  return { srv, mon: monitoringClient(srv.address) };
}

async function stop(r: Running | undefined): Promise<void> {
  r?.mon.close();
  await r?.srv.close();
}

/** Detect on every image, 8 at a time. */
async function send(srv: TestServer, images: readonly Buffer[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < images.length) await srv.detect({ model: MODEL, image: images[next++]! });
  };
  await Promise.all(Array.from({ length: 8 }, worker));
}

const report = (r: Running) => call(r.mon, r.mon.getDriftReport, { model: MODEL, version: 0 });

function feature(r: DriftReport, name: string): FeatureDrift {
  const f = r.features.find((x) => x.name === name);
  assert.ok(f, `feature ${name} in the report`);
  return f;
}

/** The sightline_drift_psi gauge of one feature of det v1, once the timer has published the window. */
async function gaugePsi(r: Running, name: string): Promise<number> {
  const port = r.srv.app.admin!.port;
  const labels = { sightline_model: MODEL, sightline_model_version: '1', sightline_feature: name };
  const s = pick((await scrape(port)).exposition, 'sightline_drift_psi', labels);
  assert.equal(s.length, 1, `one sightline_drift_psi series for ${name}`);
  return s[0]!.value;
}

const settle = () => new Promise((r) => setTimeout(r, 500)); // > drift.updateIntervalMs (200 ms)

/** The gauges (set by the timer, before any report is asked for) agree with the report. */
async function assertGaugesMatch(r: Running, rep: DriftReport, names: readonly string[]): Promise<void> {
  for (const name of names) {
    const g = await gaugePsi(r, name);
    const psi = feature(rep, name).psi!;
    assert.ok(Math.abs(g - psi) < 1e-9 * Math.max(1, psi), `${name}: gauge ${g} vs report ${psi}`);
  }
}

function log(t: TestContext, label: string, rep: DriftReport): void {
  t.diagnostic(`${label}:\n${formatDriftReport(rep)}`);
}

describe('drift monitoring on a real server', { skip: !haveData }, () => {
  const dataDir = tempDataDir();
  let names: string[];
  let rest: Buffer[];
  let running: Running | undefined;

  before(() => {
    names = readdirSync(IMAGES)
      .filter((n) => n.endsWith('.jpg'))
      .sort();
    assert.equal(names.length, 128);
    rest = names.slice(64).map((n) => readFileSync(join(IMAGES, n)));
  });
  after(async () => {
    await stop(running);
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('calibration profile from 64 coco128 images; the other 64 are stable; gauges match the report', async (t) => {
    running = await start(dataDir);
    const before = await report(running);
    assert.equal(before.profile?.source, ProfileSource.PROFILE_SOURCE_NONE, 'no profile yet');
    assert.equal(before.profile?.target, TRAFFIC_PROFILE_SIZE);
    assert.equal(before.features.length, 0);

    const summary = await buildProfile(running.mon, { model: MODEL, version: 0 }, IMAGES, names.slice(0, 64));
    assert.equal(summary.model, MODEL);
    assert.equal(summary.version, 1);
    assert.equal(summary.source, ProfileSource.PROFILE_SOURCE_CALIBRATION);
    assert.equal(summary.size, 64);
    assert.equal(summary.skipped, 0);
    assert.equal(summary.features.length, 12);
    assert.ok(
      summary.classes.some((c) => c.label === 'person' && c.reference > 0),
      'class mix from real detections',
    );

    await send(running.srv, rest);
    await settle();
    const rep = await report(running);
    log(t, 'unchanged', rep);
    assert.equal(rep.profile?.source, ProfileSource.PROFILE_SOURCE_CALIBRATION);
    assert.equal(rep.profile?.size, 64);
    assert.equal(rep.windowSize, 64, 'calibration images are not traffic');
    for (const name of ['brightness', 'saturation', 'contrast']) {
      assert.equal(
        feature(rep, name).verdict,
        DriftVerdict.DRIFT_VERDICT_STABLE,
        `${name} stable: psi ${feature(rep, name).psi} p ${feature(rep, name).pValue}`,
      );
    }
    await assertGaugesMatch(running, rep, ['brightness', 'saturation']);
  });

  test('restart on the same registry: the stored profile is used; darkened images drift on brightness', async (t) => {
    await stop(running);
    running = await start(dataDir);
    const fresh = await report(running);
    assert.equal(
      fresh.profile?.source,
      ProfileSource.PROFILE_SOURCE_CALIBRATION,
      'profile read back from the registry',
    );
    assert.equal(fresh.profile?.size, 64);
    assert.equal(fresh.windowSize, 0);

    await send(
      running.srv,
      await Promise.all(rest.map((b) => sharp(b).linear(0.4, 0).jpeg({ quality: 90 }).toBuffer())),
    );
    await settle();
    const rep = await report(running);
    log(t, 'darkened x0.4', rep);
    const b = feature(rep, 'brightness');
    assert.ok(b.psi! > 0.25, `brightness psi ${b.psi}`);
    assert.equal(b.verdict, DriftVerdict.DRIFT_VERDICT_DRIFT);
    assert.equal(rep.verdict, DriftVerdict.DRIFT_VERDICT_DRIFT);
    await assertGaugesMatch(running, rep, ['brightness', 'saturation']);
  });

  test('greyscaled images drift on saturation; an extreme image is an anomaly', async (t) => {
    await stop(running);
    running = await start(dataDir);
    await send(running.srv, await Promise.all(rest.map((b) => sharp(b).greyscale().jpeg({ quality: 90 }).toBuffer())));
    await settle();
    const rep = await report(running);
    log(t, 'greyscale', rep);
    const s = feature(rep, 'saturation');
    assert.ok(s.psi! > 0.25, `saturation psi ${s.psi}`);
    assert.equal(s.verdict, DriftVerdict.DRIFT_VERDICT_DRIFT);
    assert.equal(feature(rep, 'brightness').verdict, DriftVerdict.DRIFT_VERDICT_STABLE, 'greyscale keeps the luma');
    await assertGaugesMatch(running, rep, ['brightness', 'saturation']);

    const port = running.srv.app.admin!.port;
    const anomalies = async () =>
      pick((await scrape(port)).exposition, 'sightline_anomalies_total', {
        sightline_model: MODEL,
        sightline_model_version: '1',
      }).reduce((a, x) => a + x.value, 0);
    const countBefore = await anomalies();
    const reportedBefore = Number(rep.anomalies);
    // A black 4000x200 strip: far outside the reference's sizes and aspect ratios. (Its brightness, 0, is
    // not: the fence p01 − 1.5·IQR of coco128's brightness lies below 0, so a black frame of a usual size
    // is no anomaly by itself; it shows as drift once many arrive.)
    const strip = await sharp({ create: { width: 4000, height: 200, channels: 3, background: { r: 0, g: 0, b: 0 } } })
      .png()
      .toBuffer();
    await running.srv.detect({ model: MODEL, image: strip });
    const byFeature = pick((await scrape(port)).exposition, 'sightline_anomalies_total', {
      sightline_model: MODEL,
      sightline_model_version: '1',
    });
    t.diagnostic(
      `anomalies by feature: ${byFeature.map((x) => `${x.labels.sightline_feature}=${x.value}`).join(', ')}`,
    );
    assert.ok((await anomalies()) > countBefore, 'sightline_anomalies_total grew');
    for (const f of ['width', 'aspectRatio'])
      assert.ok(
        byFeature.some((x) => x.labels.sightline_feature === f && x.value >= 1),
        `anomaly on ${f}`,
      );
    assert.equal(Number((await report(running)).anomalies), reportedBefore + 1, 'one anomalous request');
  });

  test('CLI: sightline drift prints the report; sightline registry profile rebuilds the profile', async () => {
    const r = running!;
    const table = await runCli(['drift', MODEL, '--server', r.srv.address]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /calibration reference profile of 64 images/);
    assert.match(table.stdout, /^saturation .* drift$/m);
    const json = await runCli(['drift', MODEL, '--version', '1', '--server', r.srv.address, '--json']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as {
      verdict: string;
      profile: { source: string };
      features: { name: string; verdict: string }[];
    };
    assert.equal(parsed.verdict, 'drift');
    assert.equal(parsed.profile.source, 'calibration');
    assert.equal(parsed.features.find((f) => f.name === 'saturation')?.verdict, 'drift');

    const dir = mkdtempSync(join(tmpdir(), 'sightline-calib-'));
    try {
      for (const n of names.slice(0, 5)) copyFileSync(join(IMAGES, n), join(dir, n));
      writeFileSync(join(dir, 'notes.txt'), 'not an image: ignored');
      writeFileSync(join(dir, 'broken.jpg'), 'not a jpeg: skipped');
      const built = await runCli(['registry', 'profile', MODEL, '1', '--images', dir, '--server', r.srv.address]);
      assert.equal(built.code, 0, built.stderr);
      assert.match(built.stdout, /calibration reference profile of 5 images stored .*; 1 image\(s\) skipped/);
      assert.match(built.stdout, /skipped broken\.jpg: /);
      assert.equal((await report(r)).profile?.size, 5, 'the new profile is in use at once');
      const missing = await runCli(['drift', 'nope', '--server', r.srv.address]);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /NOT_FOUND/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('without a calibration set, the first requests become a traffic profile', async (t) => {
    const dir = tempDataDir();
    const r = await start(dir);
    try {
      await send(r.srv, rest.slice(0, TRAFFIC_PROFILE_SIZE - 1));
      const collecting = await report(r);
      assert.equal(collecting.profile?.source, ProfileSource.PROFILE_SOURCE_NONE);
      assert.equal(collecting.profile?.collected, TRAFFIC_PROFILE_SIZE - 1);
      assert.equal(collecting.verdict, DriftVerdict.DRIFT_VERDICT_INSUFFICIENT_DATA);

      await send(r.srv, rest.slice(TRAFFIC_PROFILE_SIZE - 1));
      const rep = await report(r);
      log(t, 'traffic profile', rep);
      assert.equal(rep.profile?.source, ProfileSource.PROFILE_SOURCE_TRAFFIC);
      assert.equal(rep.profile?.size, TRAFFIC_PROFILE_SIZE);
      assert.equal(
        rep.windowSize,
        rest.length - TRAFFIC_PROFILE_SIZE,
        'the window holds the requests after the profile',
      );
      assert.equal(rep.features.length, 12);
    } finally {
      await stop(r);
    }
    // Stored in the registry: a restart reads it back.
    const again = await start(dir);
    try {
      const rep = await report(again);
      assert.equal(rep.profile?.source, ProfileSource.PROFILE_SOURCE_TRAFFIC);
      assert.equal(rep.profile?.size, TRAFFIC_PROFILE_SIZE);
    } finally {
      await stop(again);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
