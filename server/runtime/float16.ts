/**
 * IEEE 754 binary16 conversion for fp16 ONNX exports (onnxruntime-node takes and returns float16 tensors as raw
 * Uint16Array bit patterns). Rounding follows numpy's float32 -> float16 cast: nearest, ties to even.
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 bit pattern -> half bit pattern. */
function halfFromF32Bits(f: number): number {
  const sign = (f >>> 16) & 0x8000;
  const exp = (f >>> 23) & 0xff;
  const mant = f & 0x7fffff;

  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // Keep the top payload bits like numpy; if they are all zero the result would read as inf, so force one bit.
    const payload = mant >>> 13;
    return sign | 0x7c00 | (payload === 0 ? 1 : payload);
  }

  const e = exp - 127;
  if (e > 15) return sign | 0x7c00;

  if (e >= -14) {
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa bumps the exponent, which is also the right answer (up to inf at 65520).
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    return sign | h;
  }

  // Below 2^-25 even the largest value rounds to zero (2^-25 itself is a tie and goes to even, i.e. zero).
  if (e < -25) return sign;
  // Subnormal half: units of 2^-24. The implicit bit joins the mantissa and the whole thing is shifted down.
  const full = mant | 0x800000;
  const shift = -e - 1; // 14..24
  let h = full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1) === 1)) h++;
  return sign | h;
}

/** Nearest half (ties to even) of `x` after rounding it to float32, as `np.float32(x).astype(np.float16)`. */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return halfFromF32Bits(scratchU32[0]!);
}

function f32BitsFromHalf(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal half becomes a normal float32: normalise the mantissa.
  let m = mant;
  let e = 113;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let decodeBits: Uint32Array | undefined;
let decodeValues: Float32Array | undefined;

/** 65536-entry table, built on first use; kept as bits so NaN payloads survive the copy. */
function decodeTable(): Uint32Array {
  if (decodeBits === undefined) {
    decodeBits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) decodeBits[h] = f32BitsFromHalf(h);
    decodeValues = new Float32Array(decodeBits.buffer);
  }
  return decodeBits;
}

export function f16BitsToF32(h: number): number {
  decodeTable();
  return decodeValues![h & 0xffff]!;
}

export function toFloat16Array(src: Float32Array, out?: Uint16Array): Uint16Array {
  const dst = out ?? new Uint16Array(src.length);
  if (dst.length !== src.length) throw new RangeError(`toFloat16Array: output length ${dst.length} != ${src.length}`);
  // Reading bits instead of values keeps NaN payloads and avoids a float64 round trip per element.
  const bits = new Int32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    const u = b & 0x7fffffff;
    // Normal halves (2^-14 <= |x| < 65536), almost every latent value: rebias the exponent and round to nearest
    // even in one integer add (+0xfff, +1 more when the kept mantissa is odd); a carry into the exponent is right,
    // up to inf at 65520. Everything else takes the exact general path.
    dst[i] = u >= 0x38800000 && u < 0x47800000 ? ((b >>> 16) & 0x8000) | ((u - 0x38000000 + 0xfff + ((u >>> 13) & 1)) >>> 13) : halfFromF32Bits(b >>> 0);
  }
  return dst;
}

export function fromFloat16Array(src: Uint16Array, out?: Float32Array): Float32Array {
  const dst = out ?? new Float32Array(src.length);
  if (dst.length !== src.length) throw new RangeError(`fromFloat16Array: output length ${dst.length} != ${src.length}`);
  const table = decodeTable();
  const bits = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) bits[i] = table[src[i]!]!;
  return dst;
}
