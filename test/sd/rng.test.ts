import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NumpyRandomState, randnFloat32 } from '../../server/sd/rng.js';

// Expected numbers were produced once with numpy 2.4 (np.random.RandomState) and are hard-coded so CI needs no Python.
//
// Tolerance policy: V8's Math.log is not glibc's log, so about 3% of float64 Gaussians differ from NumPy's in the
// last bit (observed max |Δ| = 8.9e-16 over 6 million draws, six seeds). Float64 draws are therefore compared to a
// few ulps; float32-cast values (what latents use) were identical for all 6 million draws and are compared exactly.

function assertCloseUlp(actual: number, expected: number, label: string): void {
  const tol = 4 * Number.EPSILON * Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol, `${label}: ${actual} vs ${expected}`);
}

test('raw MT19937 outputs match numpy (init_genrand + twist)', () => {
  const a = new NumpyRandomState(5489);
  assert.deepEqual([a.nextUint32(), a.nextUint32(), a.nextUint32()], [3499211612, 581869302, 3890346734]);
  const b = new NumpyRandomState(0);
  assert.deepEqual([b.nextUint32(), b.nextUint32(), b.nextUint32()], [2357136044, 2546248239, 3071714933]);
  // The 1001st output lies past the first regeneration of the 624-word state.
  for (let i = 3; i < 1000; i++) b.nextUint32();
  assert.equal(b.nextUint32(), 1333075495);
});

test('random_sample is exact (no transcendental functions involved)', () => {
  const rs = new NumpyRandomState(0);
  const got = [rs.randomSample(), rs.randomSample(), rs.randomSample(), rs.randomSample()];
  assert.deepEqual(got, [0.5488135039273248, 0.7151893663724195, 0.6027633760716439, 0.5448831829968969]);
});

test('seed 0: first 8 standard normals (doc test vector)', () => {
  const rs = new NumpyRandomState(0);
  const expected = [
    1.764052345967664, 0.4001572083672233, 0.9787379841057392, 2.240893199201458, 1.8675579901499675,
    -0.977277879876411, 0.9500884175255894, -0.1513572082976979,
  ];
  for (const [i, e] of expected.entries()) assertCloseUlp(rs.standardNormal(), e, `seed 0 draw ${i}`);
});

test('seed 42 and seed 2^32-1: first draws', () => {
  const a = new NumpyRandomState(42);
  const e42 = [0.4967141530112327, -0.13826430117118466, 0.6476885381006925, 1.5230298564080254, -0.23415337472333597, -0.23413695694918055];
  for (const [i, e] of e42.entries()) assertCloseUlp(a.standardNormal(), e, `seed 42 draw ${i}`);
  const b = new NumpyRandomState(4294967295);
  for (const [i, e] of [0.6484086742306527, 0.6693235306338161, -1.0805437227474493].entries()) {
    assertCloseUlp(b.standardNormal(), e, `seed 2^32-1 draw ${i}`);
  }
});

test('seed 0: 1000 draws (every 100th, float32 casts, sequential sums)', () => {
  const rs = new NumpyRandomState(0);
  const draws = new Float64Array(1000);
  for (let i = 0; i < 1000; i++) draws[i] = rs.standardNormal();

  const at0 = [1.764052345967664, 1.8831506970562544, -0.3691818379424436, -1.3065268517353166, -0.5986539369229861,
    0.38273243001226814, -1.550429345083481, -1.4449401990733717, 1.4111720638896117, -1.4617326882614081];
  const at99 = [0.40198936344470165, 1.336527949436392, 0.37005588784751875, 0.852551939461232, -0.07785475594085076,
    -0.17858909208732915, 1.0819352184772653, -0.8299645975379619, -0.40403229385093714, -0.35811407547985674];
  const f32At0 = [1.764052391052246, 1.8831506967544556, -0.3691818416118622, -1.3065268993377686, -0.5986539125442505,
    0.38273242115974426, -1.550429344177246, -1.444940209388733, 1.4111720323562622, -1.4617327451705933];
  for (let k = 0; k < 10; k++) {
    assertCloseUlp(draws[k * 100]!, at0[k]!, `draw ${k * 100}`);
    assertCloseUlp(draws[k * 100 + 99]!, at99[k]!, `draw ${k * 100 + 99}`);
    assert.equal(Math.fround(draws[k * 100]!), f32At0[k], `float32 draw ${k * 100}`);
  }

  // Left-to-right float64 sums from numpy; a wrong draw anywhere would move these far more than 1e-12.
  let sum = 0;
  let sumSq = 0;
  for (const v of draws) {
    sum += v;
    sumSq += v * v;
  }
  assert.ok(Math.abs(sum - -45.25670749019531) < 1e-12, `sum ${sum}`);
  assert.ok(Math.abs(sumSq - 976.2826258850073) < 1e-11, `sum of squares ${sumSq}`);
});

test('randnFloat32(0, [1,4,64,64]) equals RandomState(0).standard_normal(shape).astype(float32)', () => {
  const lat = randnFloat32(0, [1, 4, 64, 64]);
  assert.equal(lat.length, 16384);
  const expected: [number, number][] = [
    [0, 1.764052391052246], [1, 0.40015721321105957], [2, 0.978738009929657], [4095, 2.4964170455932617],
    [4096, 1.6294752359390259], [8191, -1.0508078336715698], [12288, -0.11022678017616272], [16383, 0.9660003185272217],
  ];
  for (const [i, e] of expected) assert.equal(lat[i], e, `element ${i}`);
  let sum = 0;
  for (const v of lat) sum += v;
  assert.ok(Math.abs(sum - -94.22136224959831) < 1e-9, `sum ${sum}`);

  const b = randnFloat32(6854, [2, 4, 8, 8]);
  const e6854: [number, number][] = [[0, -1.4084045886993408], [1, -0.2963481843471527], [255, -0.9612264037132263],
    [256, -0.22660845518112183], [511, -0.524253785610199]];
  for (const [i, e] of e6854) assert.equal(b[i], e, `seed 6854 element ${i}`);
});

test('invalid seeds and shapes are rejected', () => {
  assert.throws(() => new NumpyRandomState(-1), RangeError);
  assert.throws(() => new NumpyRandomState(2 ** 32), RangeError);
  assert.throws(() => new NumpyRandomState(1.5), RangeError);
  assert.throws(() => randnFloat32(0, [2, -1]), RangeError);
  assert.equal(randnFloat32(0, []).length, 1);
  assert.equal(randnFloat32(0, [3, 0]).length, 0);
});
