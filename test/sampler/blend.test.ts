import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { blendArgmax, blendSoft } from '../../server/sampler/blend.js';
import { applyGuidance, latentSize } from '../../server/sampler/guidance.js';
import type { LatentShape } from '../../server/sampler/guidance.js';

function hashArray(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((i * i * 31 + i * 7919 + seed * 104729) % 1009) / 504 - 1;
  return out;
}

/** Non-square on purpose, with C=3 so a channel-stride mistake cannot hide behind C=4 or H=W. */
const shape: LatentShape = { batch: 2, channels: 3, height: 3, width: 5 };
const HW = 15;
const N = 2 * 3 * 15;

/** a and b are distinguishable everywhere: a in [-1, 1], b = a + 10. */
function pair(): { a: Float32Array; b: Float32Array } {
  const a = hashArray(N, 1);
  const b = a.map((v) => v + 10);
  return { a, b };
}

describe('latentSize', () => {
  it('is B*C*H*W and rejects malformed shapes', () => {
    assert.equal(latentSize({ batch: 2, channels: 4, height: 64, width: 48 }), 2 * 4 * 64 * 48);
    assert.throws(() => latentSize({ batch: 1, channels: 0, height: 8, width: 8 }), RangeError);
    assert.throws(() => latentSize({ batch: 1, channels: 4, height: 8.5, width: 8 }), RangeError);
    assert.throws(() => latentSize({ batch: 1, channels: 4, height: 8, width: Number.NaN }), RangeError);
  });
});

describe('applyGuidance', () => {
  it('computes uncond + scale*(cond - uncond) with one float32 rounding', () => {
    const uncond = hashArray(40, 2);
    const cond = hashArray(40, 3);
    const out = new Float32Array(40);
    applyGuidance(out, uncond, cond, 7.5);
    for (let i = 0; i < 40; i++) assert.equal(out[i], Math.fround(uncond[i]! + 7.5 * (cond[i]! - uncond[i]!)));
  });

  it('returns uncond at scale 0 and cond at scale 1', () => {
    const uncond = hashArray(40, 2);
    const cond = hashArray(40, 3);
    const out = new Float32Array(40);
    applyGuidance(out, uncond, cond, 0);
    assert.deepEqual(out, uncond);
    applyGuidance(out, uncond, cond, 1);
    assert.deepEqual(out, cond);
  });

  it('may write over either input', () => {
    const uncond = hashArray(40, 2);
    const cond = hashArray(40, 3);
    const expected = new Float32Array(40);
    applyGuidance(expected, uncond, cond, 10);
    const u2 = uncond.slice();
    applyGuidance(u2, u2, cond, 10);
    assert.deepEqual(u2, expected);
    const c2 = cond.slice();
    applyGuidance(c2, uncond, c2, 10);
    assert.deepEqual(c2, expected);
  });

  it('rejects length mismatches and a non-finite scale', () => {
    assert.throws(() => applyGuidance(new Float32Array(4), new Float32Array(4), new Float32Array(3), 1), RangeError);
    assert.throws(() => applyGuidance(new Float32Array(4), new Float32Array(4), new Float32Array(4), Infinity), RangeError);
  });
});

describe('blendArgmax', () => {
  it('takes b exactly where salB > salA, with one mask for all channels', () => {
    const { a, b } = pair();
    const salA = hashArray(2 * HW, 4);
    const salB = hashArray(2 * HW, 5);
    const out = new Float32Array(N);
    const took = blendArgmax(out, [a, b], [salA, salB], shape)[1]!;
    let expectedTook = 0;
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < HW; p++) {
        const takeB = salB[s * HW + p]! > salA[s * HW + p]!;
        if (takeB) expectedTook++;
        for (let c = 0; c < 3; c++) {
          const i = (s * 3 + c) * HW + p;
          assert.equal(out[i], takeB ? b[i] : a[i], `sample ${s} channel ${c} pixel ${p}`);
        }
      }
    }
    assert.equal(took, expectedTook);
    assert.ok(took > 0 && took < 2 * HW, `the fixture mixes both sources (took ${took})`);
  });

  it('gives ties to a', () => {
    const { a, b } = pair();
    const sal = hashArray(2 * HW, 6);
    const out = new Float32Array(N);
    assert.deepEqual(blendArgmax(out, [a, b], [sal, sal.slice()], shape), [2 * HW, 0]);
    assert.deepEqual(out, a);
  });

  it('is strict by a single float32 step, and takes a NaN saliency as torch.argmax does (NaN is the maximum, the first one wins)', () => {
    const { a, b } = pair();
    const salA = new Float32Array(2 * HW).fill(0.25);
    const salB = salA.slice();
    salB[7] = Math.fround(0.25 + 2 ** -25); // the next float32 above 0.25
    salB[HW + 3] = Number.NaN; // torch 1.13: argmax([0.25, nan]) = 1
    salA[HW + 5] = Number.NaN; // argmax([nan, 0.25]) = 0
    salA[HW + 6] = Number.NaN;
    salB[HW + 6] = Number.NaN; // argmax([nan, nan]) = 0
    const out = new Float32Array(N);
    assert.equal(blendArgmax(out, [a, b], [salA, salB], shape)[1], 2);
    for (let c = 0; c < 3; c++) {
      assert.equal(out[c * HW + 7], b[c * HW + 7]);
      assert.equal(out[(3 + c) * HW + 3], b[(3 + c) * HW + 3]);
      assert.equal(out[(3 + c) * HW + 5], a[(3 + c) * HW + 5]);
      assert.equal(out[(3 + c) * HW + 6], a[(3 + c) * HW + 6]);
    }
    // Three inputs: the first NaN wins over a later NaN and over larger numbers (torch: argmax([1, nan, nan]) = 1).
    const three = [new Float32Array(2 * HW).fill(1), new Float32Array(2 * HW).fill(Number.NaN), new Float32Array(2 * HW).fill(Number.NaN)];
    const c3 = a.slice();
    assert.deepEqual(blendArgmax(new Float32Array(N), [a, b, c3], three, shape), [0, 2 * HW, 0]);
  });

  it('may write into a or b', () => {
    const { a, b } = pair();
    const salA = hashArray(2 * HW, 4);
    const salB = hashArray(2 * HW, 5);
    const expected = new Float32Array(N);
    const took = blendArgmax(expected, [a, b], [salA, salB], shape);
    const intoA = a.slice();
    assert.deepEqual(blendArgmax(intoA, [intoA, b], [salA, salB], shape), took);
    assert.deepEqual(intoA, expected);
    const intoB = b.slice();
    assert.deepEqual(blendArgmax(intoB, [a, intoB], [salA, salB], shape), took);
    assert.deepEqual(intoB, expected);
  });

  it('rejects buffers that do not match the shape', () => {
    const { a, b } = pair();
    const sal = new Float32Array(2 * HW);
    assert.throws(() => blendArgmax(new Float32Array(N), [a, b], [sal, new Float32Array(HW)], shape), RangeError);
    assert.throws(() => blendArgmax(new Float32Array(N - 1), [a, b], [sal, sal], shape), RangeError);
    assert.throws(() => blendArgmax(new Float32Array(N), [a.subarray(1), b], [sal, sal], shape), RangeError);
  });
});

describe('blendSoft', () => {
  it('weights b by salB/(salA+salB) per pixel, the same weight for all channels', () => {
    const { a, b } = pair();
    const salA = hashArray(2 * HW, 4).map(Math.abs);
    const salB = hashArray(2 * HW, 5).map(Math.abs);
    const out = new Float32Array(N);
    blendSoft(out, [a, b], [salA, salB], shape);
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < HW; p++) {
        const sa = salA[s * HW + p]!;
        const sb = salB[s * HW + p]!;
        const w = sa + sb === 0 ? 0.5 : sb / (sa + sb);
        for (let c = 0; c < 3; c++) {
          const i = (s * 3 + c) * HW + p;
          assert.equal(out[i], Math.fround((1 - w) * a[i]! + w * b[i]!), `sample ${s} channel ${c} pixel ${p}`);
        }
      }
    }
  });

  it('gives the documented weights at the extremes', () => {
    const { a, b } = pair();
    const salA = new Float32Array(2 * HW);
    const salB = new Float32Array(2 * HW);
    salA[0] = 1; // w = 0: a exactly
    salB[1] = 1; // w = 1: b exactly
    salA[2] = 1;
    salB[2] = 3; // w = 0.75
    salA[3] = 2;
    salB[3] = 2; // w = 0.5
    // pixel 4 onwards: both 0, w = 0.5
    const out = new Float32Array(N);
    blendSoft(out, [a, b], [salA, salB], shape);
    for (let c = 0; c < 3; c++) {
      const at = (p: number): number => (c * HW) + p;
      assert.equal(out[at(0)], a[at(0)]);
      assert.equal(out[at(1)], b[at(1)]);
      assert.equal(out[at(2)], Math.fround(0.25 * a[at(2)]! + 0.75 * b[at(2)]!));
      assert.equal(out[at(3)], Math.fround(0.5 * a[at(3)]! + 0.5 * b[at(3)]!));
      assert.equal(out[at(4)], Math.fround(0.5 * a[at(4)]! + 0.5 * b[at(4)]!));
      const second = (3 + c) * HW + 9;
      assert.equal(out[second], Math.fround(0.5 * a[second]! + 0.5 * b[second]!));
    }
  });

  it('agrees with argmax on which side dominates, and may write into a', () => {
    const { a, b } = pair();
    const salA = hashArray(2 * HW, 4).map(Math.abs);
    const salB = hashArray(2 * HW, 5).map(Math.abs);
    const soft = new Float32Array(N);
    blendSoft(soft, [a, b], [salA, salB], shape);
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < HW; p++) {
        const i = s * 3 * HW + p;
        const closerToB = Math.abs(soft[i]! - b[i]!) < Math.abs(soft[i]! - a[i]!);
        assert.equal(closerToB, salB[s * HW + p]! > salA[s * HW + p]!, `sample ${s} pixel ${p}`);
      }
    }
    const intoA = a.slice();
    blendSoft(intoA, [intoA, b], [salA, salB], shape);
    assert.deepEqual(intoA, soft);
  });

  it('rejects buffers that do not match the shape', () => {
    const { a, b } = pair();
    assert.throws(() => blendSoft(new Float32Array(N), [a, b], [new Float32Array(HW), new Float32Array(2 * HW)], shape), RangeError);
  });
});

describe('blending 3 and 4 inputs', () => {
  /** The per-pixel rule written plainly: argmax with ties to the earliest, or weights s_k / Σ s. */
  function reference(noises: Float32Array[], sals: Float32Array[], mode: 'argmax' | 'soft'): Float32Array {
    const out = new Float32Array(N);
    for (let s = 0; s < 2; s++) {
      for (let p = 0; p < HW; p++) {
        const v = sals.map((m) => m[s * HW + p]!);
        const max = Math.max(...v);
        const total = v.reduce((x, y) => x + y, 0);
        for (let c = 0; c < 3; c++) {
          const i = (s * 3 + c) * HW + p;
          out[i] = mode === 'argmax' ? noises[v.indexOf(max)]![i]! : noises.reduce((acc, x, k) => acc + (v[k]! / total) * x[i]!, 0);
        }
      }
    }
    return out;
  }

  it('argmax takes the most salient input per pixel, ties to the earliest, and counts each input', () => {
    for (const k of [3, 4]) {
      const noises = Array.from({ length: k }, (_, j) => hashArray(N, 20 + j));
      // Saliencies quantised to a few levels so that ties occur.
      const sals = Array.from({ length: k }, (_, j) => hashArray(2 * HW, 40 + j).map((x) => Math.round(x * 3) / 3));
      const out = new Float32Array(N);
      const took = blendArgmax(out, noises, sals, shape);
      assert.deepEqual(out, reference(noises, sals, 'argmax'));
      assert.equal(took.reduce((x, y) => x + y, 0), 2 * HW);
      assert.ok(took.every((t) => t > 0), `every input wins somewhere: ${took}`);
    }
  });

  it('soft weights are normalised over all inputs (within float32 rounding of the reference)', () => {
    const noises = Array.from({ length: 4 }, (_, j) => hashArray(N, 60 + j));
    const sals = Array.from({ length: 4 }, (_, j) => hashArray(2 * HW, 70 + j).map((x) => Math.abs(x) + 0.01));
    const out = new Float32Array(N);
    blendSoft(out, noises, sals, shape);
    const ref = reference(noises, sals, 'soft');
    for (let i = 0; i < N; i++) assert.ok(Math.abs(out[i]! - ref[i]!) <= 1e-6 * (1 + Math.abs(ref[i]!)), `${i}`);
    // All-zero saliencies: equal weights.
    const zero = Array.from({ length: 3 }, () => new Float32Array(2 * HW));
    blendSoft(out.subarray(0, N), noises.slice(0, 3), zero, shape);
    assert.ok(Math.abs(out[5]! - (noises[0]![5]! + noises[1]![5]! + noises[2]![5]!) / 3) < 1e-6);
  });

  it('rejects fewer than two inputs or a missing saliency', () => {
    const a = hashArray(N, 1);
    const sal = hashArray(2 * HW, 2);
    assert.throws(() => blendArgmax(new Float32Array(N), [a], [sal], shape), /2 or more/);
    assert.throws(() => blendSoft(new Float32Array(N), [a, a, a], [sal, sal], shape), /one saliency each/);
  });
});
