/** The YOLO dataset reader: coco128 from ../shared, plus label parsing and name sources on temp dirs. */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { SightlineError } from '../../src/errors.js';
import { loadYoloDataset, readYoloLabels } from '../../src/eval/dataset.js';
import { coco128Dir, requireShared } from '../support/shared.js';

describe('loadYoloDataset on coco128', () => {
  test('128 images, 126 label files, 929 boxes, 2 background images, 80 names', async (t) => {
    if (!requireShared(t, 'datasets', 'coco128')) return;
    const ds = await loadYoloDataset(coco128Dir);
    assert.equal(ds.images.length, 128);
    const labelled = ds.images.filter((i) => i.labelPath !== null);
    assert.equal(labelled.length, 126);
    assert.deepEqual(
      ds.images.filter((i) => i.labelPath === null).map((i) => basename(i.path)),
      ['000000000250.jpg', '000000000508.jpg'],
    );
    assert.deepEqual(
      [...ds.images].map((i) => i.path),
      [...ds.images].map((i) => i.path).sort(),
      'sorted',
    );
    assert.equal(ds.names?.length, 80);
    assert.equal(ds.names?.[0], 'person');
    assert.equal(ds.names?.[79], 'toothbrush');

    let boxes = 0;
    for (const img of labelled) {
      assert.equal(basename(img.labelPath ?? '', '.txt'), basename(img.path, '.jpg'));
      // sizes only matter for pixel coordinates; count boxes on a unit image
      const g = readYoloLabels(await readFile(img.labelPath ?? '', 'utf8'), 1, 1);
      boxes += g.count;
      for (let k = 0; k < g.count; k++) assert.ok(g.classes[k] >= 0 && g.classes[k] < 80);
    }
    assert.equal(boxes, 929);
  });

  test('labels of a real image map to pixels inside it', async (t) => {
    if (!requireShared(t, 'datasets', 'coco128')) return;
    const ds = await loadYoloDataset(coco128Dir);
    const img = ds.images.find((i) => basename(i.path) === '000000000009.jpg');
    assert.ok(img?.labelPath);
    const { width = 0, height = 0 } = await sharp(img.path).metadata();
    const g = readYoloLabels(await readFile(img.labelPath, 'utf8'), width, height);
    // first line: 45 0.479492 0.688771 0.955609 0.5955
    assert.equal(g.classes[0], 45);
    const want = [
      (0.479492 - 0.955609 / 2) * width,
      (0.688771 - 0.5955 / 2) * height,
      (0.479492 + 0.955609 / 2) * width,
      (0.688771 + 0.5955 / 2) * height,
    ];
    want.forEach((v, k) => assert.ok(Math.abs(g.boxes[k] - v) < 1e-3, `${g.boxes[k]} vs ${v}`));
  });
});

describe('readYoloLabels', () => {
  test('normalised cx cy w h to pixel xyxy; blank lines and CRLF are fine', () => {
    const g = readYoloLabels('0 0.5 0.5 0.5 0.25\r\n\n3 0.25 0.75 0.1 0.2\n', 200, 100);
    assert.equal(g.count, 2);
    assert.deepEqual(Array.from(g.classes), [0, 3]);
    const expected = [50, 37.5, 150, 62.5, 40, 65, 60, 85];
    Array.from(g.boxes).forEach((v, k) => assert.ok(Math.abs(v - expected[k]) < 1e-4, `${v} vs ${expected[k]}`));
  });

  test('segmentation polygons reduce to their bounding box', () => {
    const g = readYoloLabels('1 0.1 0.2 0.5 0.1 0.3 0.6', 10, 10);
    assert.deepEqual(
      Array.from(g.boxes).map((v) => Math.round(v * 1000) / 1000),
      [1, 1, 5, 6],
    );
  });

  test('empty text is a background image; malformed lines are refused with their line number', () => {
    assert.equal(readYoloLabels('', 10, 10).count, 0);
    for (const bad of ['0 0.5 0.5 0.5', 'a 0.5 0.5 0.5 0.5', '-1 0.5 0.5 0.5 0.5', '0 0.5 0.5 x 0.5', '0 1 2 3 4 5']) {
      assert.throws(
        () => readYoloLabels(`0 0.5 0.5 0.1 0.1\n${bad}`, 10, 10),
        (e: unknown) => e instanceof SightlineError && e.code === 'INVALID_INPUT' && /line 2/.test(e.message),
        bad,
      );
    }
  });
});

describe('loadYoloDataset on a temp folder', () => {
  test('nested sub-folders, mixed extensions, data.yaml names, missing labels folder', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sightline-ds-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await mkdir(join(dir, 'images', 'a', 'b'), { recursive: true });
    await mkdir(join(dir, 'labels', 'a', 'b'), { recursive: true });
    await writeFile(join(dir, 'images', 'a', 'b', 'x.PNG'), '');
    await writeFile(join(dir, 'images', 'y.jpeg'), '');
    await writeFile(join(dir, 'images', 'notes.txt'), '');
    await writeFile(join(dir, 'labels', 'a', 'b', 'x.txt'), '0 0.5 0.5 1 1\n');
    await writeFile(join(dir, 'data.yaml'), 'names:\n  0: cat\n  1: dog\n');
    const ds = await loadYoloDataset(dir);
    assert.deepEqual(
      ds.images.map((i) => [i.path.slice(dir.length + 1), i.labelPath?.slice(dir.length + 1) ?? null]),
      [
        [join('images', 'a', 'b', 'x.PNG'), join('labels', 'a', 'b', 'x.txt')],
        [join('images', 'y.jpeg'), null],
      ],
    );
    assert.deepEqual(ds.names, ['cat', 'dog']);

    await writeFile(join(dir, 'data.yaml'), 'names: [cat, dog, bird]\n');
    assert.deepEqual((await loadYoloDataset(dir)).names, ['cat', 'dog', 'bird']);
    await writeFile(join(dir, 'classes.txt'), 'one\ntwo\n');
    assert.deepEqual((await loadYoloDataset(dir)).names, ['one', 'two'], 'classes.txt wins');
    await rm(join(dir, 'labels'), { recursive: true });
    assert.ok((await loadYoloDataset(dir)).images.every((i) => i.labelPath === null));
  });

  test('no names source gives null; no images folder is refused', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sightline-ds-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    await assert.rejects(
      loadYoloDataset(dir),
      (e: unknown) => e instanceof SightlineError && e.code === 'INVALID_INPUT' && /images/.test(e.message),
    );
    await mkdir(join(dir, 'images'));
    assert.deepEqual(await loadYoloDataset(dir), { images: [], names: null });
  });
});
