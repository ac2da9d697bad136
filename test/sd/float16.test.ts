import { test } from 'node:test';
import assert from 'node:assert/strict';
import { f16BitsToF32, f32ToF16Bits, fromFloat16Array, toFloat16Array } from '../../server/runtime/float16.js';

// Cross-checked once against numpy 2.4 (`astype(np.float16)` on 11 million float32 bit patterns, and all 65536
// halves to float32): identical bits, NaN payloads included. Spot values below are from that run.

test('known values', () => {
  assert.equal(f32ToF16Bits(981), 0x63aa);
  assert.equal(f16BitsToF32(0x63aa), 981);
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f16BitsToF32(0x3c00), 1);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(0), 0x0000);
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.ok(Object.is(f16BitsToF32(0x8000), -0));
  assert.equal(f32ToF16Bits(0.1), 0x2e66);
  assert.equal(f16BitsToF32(0x2e66), 0.0999755859375);
});

test('overflow, infinities and NaN', () => {
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f32ToF16Bits(65519.99), 0x7bff); // below the midpoint to the next (virtual) step
  assert.equal(f32ToF16Bits(65520), 0x7c00); // the midpoint rounds to even, which is inf
  assert.equal(f32ToF16Bits(1e10), 0x7c00);
  assert.equal(f32ToF16Bits(-1e10), 0xfc00);
  assert.equal(f32ToF16Bits(Infinity), 0x7c00);
  assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
  assert.equal(f16BitsToF32(0x7c00), Infinity);
  assert.equal(f16BitsToF32(0xfc00), -Infinity);
  const nan = f32ToF16Bits(NaN);
  assert.equal(nan & 0x7c00, 0x7c00);
  assert.notEqual(nan & 0x3ff, 0);
  assert.ok(Number.isNaN(f16BitsToF32(0x7e00)));
  assert.ok(Number.isNaN(f16BitsToF32(0xfc01)));
});

test('subnormals', () => {
  const tiny = 2 ** -24;
  assert.equal(f32ToF16Bits(tiny), 0x0001);
  assert.equal(f16BitsToF32(0x0001), tiny);
  assert.equal(f32ToF16Bits(-tiny), 0x8001);
  assert.equal(f16BitsToF32(0x03ff), 1023 * tiny); // largest subnormal
  assert.equal(f32ToF16Bits(1023 * tiny), 0x03ff);
  assert.equal(f32ToF16Bits(2 ** -14), 0x0400); // smallest normal
  assert.equal(f32ToF16Bits(1023.5 * tiny), 0x0400); // tie, rounds up to the even neighbour (the smallest normal)
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // exactly half the smallest subnormal: tie to even, zero
  assert.equal(f32ToF16Bits(2 ** -25 * 1.0000001), 0x0001);
  assert.equal(f32ToF16Bits(1.5 * tiny), 0x0002); // tie between 1 and 2 units goes to 2
  assert.equal(f32ToF16Bits(2.5 * tiny), 0x0002); // tie between 2 and 3 units goes to 2
  assert.equal(f32ToF16Bits(2 ** -26), 0x0000);
  assert.equal(f32ToF16Bits(1e-45), 0x0000); // float32 subnormal input
});

test('rounding ties to even in the normal range', () => {
  // Half spacing in [1, 2) is 2^-10.
  const ulp = 2 ** -10;
  assert.equal(f32ToF16Bits(1 + ulp / 2), 0x3c00); // tie, 0x3c00 is even
  assert.equal(f32ToF16Bits(1 + 1.5 * ulp), 0x3c02); // tie, rounds up to even
  assert.equal(f32ToF16Bits(1 + ulp / 2 + 2 ** -20), 0x3c01); // just above the tie
  assert.equal(f32ToF16Bits(1 + ulp / 2 - 2 ** -20), 0x3c00);
  assert.equal(f32ToF16Bits(2047), 0x67ff);
  assert.equal(f32ToF16Bits(2049), 0x6800); // tie between 2048 and 2050 goes to 2048
  assert.equal(f32ToF16Bits(2051), 0x6802); // tie between 2050 and 2052 goes to 2052
  assert.equal(f32ToF16Bits(1.9999), 0x4000); // carry into the exponent
});

test('exhaustive: every half survives half -> float32 -> half', () => {
  for (let h = 0; h < 65536; h++) {
    const f = f16BitsToF32(h);
    if (Number.isNaN(f)) {
      // JS numbers need not keep NaN payloads; the array path below checks them bit for bit.
      assert.equal(f32ToF16Bits(f) & 0x7c00, 0x7c00);
      continue;
    }
    assert.equal(f32ToF16Bits(f), h, `half 0x${h.toString(16)}`);
  }
  const all = new Uint16Array(65536);
  for (let h = 0; h < 65536; h++) all[h] = h;
  const back = toFloat16Array(fromFloat16Array(all));
  assert.deepEqual(back, all);
});

test('array conversions: out parameters, length checks, typed-array views', () => {
  const src = Float32Array.from([981, 1, -0.5, 65520, 2 ** -24]);
  const out = new Uint16Array(5);
  assert.equal(toFloat16Array(src, out), out);
  assert.deepEqual(Array.from(out), [0x63aa, 0x3c00, 0xb800, 0x7c00, 0x0001]);
  const f = new Float32Array(5);
  assert.equal(fromFloat16Array(out, f), f);
  assert.deepEqual(Array.from(f), [981, 1, -0.5, Infinity, 2 ** -24]);
  assert.throws(() => toFloat16Array(src, new Uint16Array(4)), RangeError);
  assert.throws(() => fromFloat16Array(out, new Float32Array(6)), RangeError);

  // Views with a non-zero byteOffset must only touch their own window.
  const big = new Float32Array(8).fill(7);
  const view = big.subarray(2, 4);
  fromFloat16Array(Uint16Array.from([0x3c00, 0xc000]), view);
  assert.deepEqual(Array.from(big), [7, 7, 1, -2, 7, 7, 7, 7]);
  assert.deepEqual(Array.from(toFloat16Array(big.subarray(3, 5))), [0xc000, 0x4700]);
});

test("toFloat16Array's fast path for normal halves gives the general path's bits, at every edge", () => {
  // Every float32 of both signs whose exponent sits at an edge of the fast path (the smallest normal half, the
  // largest finite half and overflow), plus the whole range sampled: each against f32ToF16Bits, one value at a time.
  // (Run once over all 2^29 patterns from 2^-15 to 2^17: no mismatch.)
  const exponents = [112, 113, 114, 126, 127, 142, 143, 144];
  const bits = new Uint32Array(exponents.length * (1 << 23) / 8 + (1 << 20));
  let n = 0;
  for (const e of exponents) for (let m = 0; m < 1 << 23; m += 8) bits[n++] = ((e << 23) | m | (m & 8 ? 0x80000000 : 0)) >>> 0;
  for (let i = 0; n < bits.length; i++) bits[n++] = (0x38000000 + Math.imul(i, 2654435761) % 0x10000000) >>> 0;
  const values = new Float32Array(bits.buffer);
  const halves = toFloat16Array(values);
  let mismatches = 0;
  for (let i = 0; i < values.length; i++) if (halves[i] !== f32ToF16Bits(values[i]!)) mismatches++;
  assert.equal(mismatches, 0);
});
