import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chiSquare,
  chiSquarePValue,
  gammaQ,
  histogram,
  ksStatistic,
  lnGamma,
  psi,
  psiNoiseFloor,
  quantileEdges,
  quantileSorted,
  summary,
} from '../../src/monitoring/index.js';

const close = (actual: number, expected: number, tol: number, what = ''): void =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} vs ${expected} (±${tol})`);
const relClose = (actual: number, expected: number, rel: number, what = ''): void =>
  assert.ok(Math.abs(actual - expected) <= rel * Math.abs(expected), `${what} ${actual} vs ${expected} (rel ${rel})`);

test('quantileSorted interpolates linearly (type 7, NumPy default)', () => {
  const s = [1, 2, 3, 4, 5];
  assert.equal(quantileSorted(s, 0), 1);
  assert.equal(quantileSorted(s, 1), 5);
  assert.equal(quantileSorted(s, 0.5), 3);
  close(quantileSorted(s, 0.05), 1.2, 1e-12);
  assert.ok(Number.isNaN(quantileSorted([], 0.5)));
});

test('quantileEdges: deciles of 1..100, each bin gets 10', () => {
  const sample = Array.from({ length: 100 }, (_, i) => 100 - i); // unsorted on purpose
  const edges = quantileEdges(sample, 10);
  assert.equal(edges.length, 9);
  close(edges[0], 10.9, 1e-9);
  close(edges[8], 90.1, 1e-9);
  assert.deepEqual(histogram(sample, edges), new Array(10).fill(10));
});

test('quantileEdges: a constant feature gets a bin of its own and still sees moves both ways', () => {
  const edges = quantileEdges([640, 640, 640, 640], 10);
  assert.equal(edges.length, 2);
  assert.ok(edges[0] < 640 && edges[1] === 640);
  assert.deepEqual(histogram([480, 640, 640, 1280], edges), [1, 2, 1]);
  assert.deepEqual(quantileEdges([], 10), []);
  assert.deepEqual(quantileEdges([1, 2, 3], 1), []);
});

test('quantileEdges: a point mass (40% zeros) is separated from its neighbours', () => {
  const sample = [0, 0, 0, 0, 1, 2, 3, 4, 5, 6];
  const edges = quantileEdges(sample, 10);
  assert.ok(
    edges.every((e, i) => i === 0 || edges[i - 1] < e),
    'strictly ascending',
  );
  const counts = histogram(sample, edges);
  assert.equal(counts[edges.indexOf(0)], 4, 'the zeros sit alone in the bin ending at 0');
  assert.equal(
    counts.reduce((a, b) => a + b, 0),
    10,
  );
});

test('histogram bins are right-closed', () => {
  assert.deepEqual(histogram([0, 1, 1.5, 2, 3], [1, 2]), [2, 2, 1]);
});

test('psi: identical distributions give 0, symmetric, known shifted case', () => {
  assert.equal(psi([10, 20, 30], [10, 20, 30]), 0);
  assert.equal(psi([10, 20, 30], [20, 40, 60]), 0, 'only proportions matter');
  // (0.75 − 0.5)·ln(1.5) + (0.25 − 0.5)·ln(0.5) = 0.25·ln 3
  close(psi([50, 50], [75, 25]), 0.25 * Math.log(3), 1e-12);
  close(psi([75, 25], [50, 50]), psi([50, 50], [75, 25]), 1e-15);
});

test('psi: an empty bin costs a large finite amount, set by epsilon', () => {
  const v = psi([100, 0], [50, 50]);
  // (0.5 − 1)·ln(0.5) + (0.5 − 1e-4)·ln(0.5 / 1e-4)
  close(v, -0.5 * Math.log(0.5) + (0.5 - 1e-4) * Math.log(0.5 / 1e-4), 1e-12);
  assert.ok(psi([100, 0], [50, 50], 1e-2) < v);
  assert.throws(() => psi([1, 2], [1, 2, 3]), RangeError);
  assert.throws(() => psi([0, 0], [1, 2]), RangeError);
});

test('psiNoiseFloor: (bins − 1)·(1/n + 1/m)', () => {
  close(psiNoiseFloor(10, 64, 64), 0.28125, 1e-12);
  close(psiNoiseFloor(10, 500, 500), 0.036, 1e-12);
});

test('ksStatistic: identical → 0, disjoint → 1, known overlaps and ties', () => {
  assert.equal(ksStatistic([1, 2, 3, 4], [4, 3, 2, 1]), 0);
  assert.equal(ksStatistic([1, 2, 3], [10, 11]), 1);
  assert.equal(ksStatistic([10, 11], [1, 2, 3]), 1);
  assert.equal(ksStatistic([1, 2, 3, 4], [3, 4, 5, 6]), 0.5);
  close(ksStatistic([1, 1, 2], [1, 2, 2]), 1 / 3, 1e-15, 'ties are stepped over together');
  assert.equal(ksStatistic([5, 5, 5], [5]), 0);
  assert.throws(() => ksStatistic([2, 1], [1]), RangeError);
  assert.throws(() => ksStatistic([], [1]), RangeError);
});

test('lnGamma matches factorials and Γ(1/2) = √π', () => {
  close(lnGamma(1), 0, 1e-14);
  close(lnGamma(5), Math.log(24), 1e-13);
  close(lnGamma(0.5), 0.5 * Math.log(Math.PI), 1e-13);
  relClose(lnGamma(101), 363.73937555556347, 1e-13, 'ln 100!');
});

test('chi-square p-values match tables', () => {
  // 95th and 99th percentiles of chi-square(dof).
  close(chiSquarePValue(3.841458820694124, 1), 0.05, 1e-10, 'dof 1');
  close(chiSquarePValue(6.6348966010212145, 1), 0.01, 1e-10, 'dof 1, 1%');
  close(chiSquarePValue(5.991464547107979, 2), 0.05, 1e-10, 'dof 2');
  close(chiSquarePValue(18.307038053275146, 10), 0.05, 1e-10, 'dof 10');
  close(chiSquarePValue(124.34211340400407, 100), 0.05, 1e-9, 'dof 100');
  // Closed forms: dof 2 → e^(−x/2); dof 4 → e^(−x/2)(1 + x/2).
  for (const x of [0.1, 1, 7, 30]) {
    relClose(chiSquarePValue(x, 2), Math.exp(-x / 2), 1e-12, `dof 2 x ${x}`);
    relClose(chiSquarePValue(x, 4), Math.exp(-x / 2) * (1 + x / 2), 1e-12, `dof 4 x ${x}`);
  }
  relClose(chiSquarePValue(100, 1), 1.5239706048320995e-23, 1e-8, 'far tail, dof 1 (erfc √50)');
  assert.equal(chiSquarePValue(0, 3), 1);
  assert.equal(chiSquarePValue(5, 0), 1);
  assert.equal(gammaQ(1, 0), 1);
  assert.throws(() => gammaQ(0, 1), RangeError);
});

test('chiSquare: 2×k homogeneity test', () => {
  // E = 15 in every cell: 4 · 5²/15 = 20/3, dof 1, p = erfc(√(10/3)) = 0.009823...
  const r = chiSquare([10, 20], [20, 10]);
  close(r.statistic, 20 / 3, 1e-12);
  assert.equal(r.dof, 1);
  close(r.pValue, 0.009823274507519235, 1e-12);
  const same = chiSquare([10, 20, 30], [20, 40, 60]);
  close(same.statistic, 0, 1e-12);
  close(same.pValue, 1, 1e-12);
  assert.equal(same.dof, 2);
  assert.equal(chiSquare([5, 0, 5], [5, 0, 5]).dof, 1, 'categories empty on both sides are dropped');
});

test('summary: mean, population std, quantiles, range; NaN for empty', () => {
  const s = summary([5, 1, 4, 2, 3]);
  assert.equal(s.n, 5);
  assert.equal(s.mean, 3);
  close(s.std, Math.SQRT2, 1e-15);
  assert.equal(s.p50, 3);
  close(s.p05, 1.2, 1e-12);
  close(s.p95, 4.8, 1e-12);
  assert.equal(s.min, 1);
  assert.equal(s.max, 5);
  const e = summary([]);
  assert.equal(e.n, 0);
  assert.ok(Number.isNaN(e.mean));
});
