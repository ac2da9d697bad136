import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeNpy, encodeNpy, NpyError } from '../../server/sd/npy.js';

// Fixtures are the exact bytes of numpy 2.4 `np.save` output (base64), generated once and embedded so CI needs no Python:
//   a = (np.arange(24, dtype=np.float32).reshape(1,4,2,3) - 11.5) / 7
//   a.ravel()[0] = -0.0; a.ravel()[5] = np.float32(1e-40); a.ravel()[6] = np.inf
const F32_NPY =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDEsIDQsIDIsIDMpLCB9ICAgICAgICAgICAgICAg' +
  'ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAACAAADAv9u2rb+3bZu/kiSJv8IWAQAAAIB/SZIkvwAAAL9u27a+t21bviVJkr0lSZI9' +
  't21bPm7btj4AAAA/SZIkP5IkST/btm0/kiSJP7dtmz/btq0/AADAPyVJ0j8=';
const F32_VALUES = [
  -0, -1.5, -1.3571428060531616, -1.2142857313156128, -1.0714285373687744, 9.99994610111476e-41, Infinity,
  -0.6428571343421936, -0.5, -0.3571428656578064, -0.2142857164144516, -0.0714285746216774, 0.0714285746216774,
  0.2142857164144516, 0.3571428656578064, 0.5, 0.6428571343421936, 0.7857142686843872, 0.9285714030265808,
  1.0714285373687744, 1.2142857313156128, 1.3571428060531616, 1.5, 1.6428571939468384,
];
//   d = np.array([[1.0, -2.5, 1/3], [1e300, 3.4028235677973366e38, 2**-149]], dtype=np.float64)
const F64_NPY =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY4JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsIDMpLCB9ICAgICAgICAgICAgICAgICAgICAg' +
  'ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAADwPwAAAAAAAATAVVVVVVVV1T+cdQCIPOQ3fgAAAPD//+9HAAAAAAAAoDY=';
// d.astype(np.float32): overflow to inf, and the float32 midpoint above FLT_MAX rounds to inf as in numpy.
const F64_AS_F32 = [1, -2.5, 0.3333333432674408, Infinity, Infinity, 1.401298464324817e-45];
//   np.zeros((3, 2), np.float32, order='F')
const FORTRAN_NPY =
  'k05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBUcnVlLCAnc2hhcGUnOiAoMywgMiksIH0gICAgICAgICAgICAgICAgICAgICAg' +
  'ICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAoAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

const b64 = (s: string): Buffer => Buffer.from(s, 'base64');

function headerOf(buf: Buffer): string {
  return buf.subarray(10, 10 + buf.readUInt16LE(8)).toString('latin1');
}

test('encodeNpy is byte-identical to numpy.save (float32, (1,4,2,3))', () => {
  const enc = encodeNpy(Float32Array.from(F32_VALUES), [1, 4, 2, 3]);
  assert.equal(enc.length, 224);
  assert.ok(enc.equals(b64(F32_NPY)));
});

test('encodeNpy headers for 0-d, 1-d, empty and 6-d shapes match numpy', () => {
  const pad = (s: string): string => s + ' '.repeat(117 - s.length) + '\n';
  const cases: [number[], string][] = [
    [[], "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"],
    [[5], "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }"],
    [[0], "{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }"],
    [[2, 3, 4, 5, 6, 7], "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 5, 6, 7), }"],
  ];
  for (const [shape, text] of cases) {
    const n = shape.reduce((a, b) => a * b, 1);
    const enc = encodeNpy(new Float32Array(n), shape);
    assert.deepEqual([...enc.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
    assert.equal(enc.readUInt16LE(8), 118);
    assert.equal(headerOf(enc), pad(text));
    assert.equal(enc.length, 128 + 4 * n);
  }
});

test('encodeNpy: data starts on a 64-byte boundary for a latent-sized array and round-trips', () => {
  const data = new Float32Array(2 * 4 * 64 * 64);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i) * 3;
  const enc = encodeNpy(data, [2, 4, 64, 64]);
  assert.equal((10 + enc.readUInt16LE(8)) % 64, 0);
  const dec = decodeNpy(enc);
  assert.deepEqual(dec.shape, [2, 4, 64, 64]);
  assert.deepEqual(dec.data, data);
});

test('encodeNpy rejects shape/data mismatches', () => {
  assert.throws(() => encodeNpy(new Float32Array(5), [2, 3]), NpyError);
  assert.throws(() => encodeNpy(new Float32Array(0), [-1]), NpyError);
});

test('decodeNpy reads the numpy float32 and float64 fixtures', () => {
  const a = decodeNpy(b64(F32_NPY), 'a.npy');
  assert.deepEqual(a.shape, [1, 4, 2, 3]);
  assert.deepEqual(Array.from(a.data), F32_VALUES);
  assert.ok(Object.is(a.data[0], -0));

  const d = decodeNpy(b64(F64_NPY), 'd.npy');
  assert.deepEqual(d.shape, [2, 3]);
  assert.deepEqual(Array.from(d.data), F64_AS_F32);
});

test('decodeNpy works on an unaligned Uint8Array view', () => {
  const src = b64(F32_NPY);
  const backing = new Uint8Array(src.length + 3);
  backing.set(src, 3);
  const dec = decodeNpy(backing.subarray(3));
  assert.deepEqual(Array.from(dec.data), F32_VALUES);
});

/** A hand-built file with a version 2.0/3.0 header (4-byte length), as numpy writes for huge or non-latin1 headers. */
function withVersion(major: number, header: string, payload: Float32Array): Buffer {
  const hb = Buffer.from(header + ' '.repeat(64 - ((12 + Buffer.byteLength(header) + 1) % 64)) + '\n', 'utf8');
  const pre = Buffer.alloc(12);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]).copy(pre);
  pre.writeUInt32LE(hb.length, 8);
  return Buffer.concat([pre, hb, Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)]);
}

test('decodeNpy reads 2.0 and 3.0 headers, any key order and double quotes', () => {
  const v2 = withVersion(2, "{'shape': (3,), 'fortran_order': False, 'descr': '<f4', }", Float32Array.from([1, 2, 3]));
  assert.deepEqual(decodeNpy(v2), { data: Float32Array.from([1, 2, 3]), shape: [3] });
  const v3 = withVersion(3, '{"descr": "<f4", "fortran_order": False, "shape": (1, 2), "note": "é"}', Float32Array.from([4, 5]));
  assert.deepEqual(decodeNpy(v3), { data: Float32Array.from([4, 5]), shape: [1, 2] });
});

test('decodeNpy errors name the source and the problem', () => {
  const good = b64(F32_NPY);
  const expectErr = (buf: Buffer, re: RegExp): void => {
    assert.throws(() => decodeNpy(buf, 'latents/x.npy'), (e: unknown) => {
      assert.ok(e instanceof NpyError);
      assert.match(e.message, /latents\/x\.npy/);
      assert.match(e.message, re);
      return true;
    });
  };
  expectErr(b64(FORTRAN_NPY), /fortran_order/);
  expectErr(good.subarray(0, good.length - 1), /truncated data/);
  expectErr(good.subarray(0, 50), /truncated header/);
  const badMagic = Buffer.from(good);
  badMagic[1] = 0x58;
  expectErr(badMagic, /bad magic/);
  expectErr(Buffer.from('hello'), /bad magic/);
  const badVersion = Buffer.from(good);
  badVersion[6] = 4;
  expectErr(badVersion, /version 4\.0/);

  const swap = (from: string, to: string): Buffer => {
    const b = Buffer.from(good);
    const at = b.indexOf(from);
    b.write(to, at, 'latin1');
    return b;
  };
  expectErr(swap("'<f4'", "'>f4'"), /big-endian/);
  expectErr(swap("'<f4'", "'<i4'"), /unsupported dtype <i4/);
  expectErr(swap("'<f4'", "'<f2'"), /unsupported dtype <f2/);
  expectErr(swap("'shape'", "'shapX'"), /bad shape/);
  expectErr(swap('(1, 4, 2, 3)', '(1, 4, 2, ?)'), /malformed header/);
});
