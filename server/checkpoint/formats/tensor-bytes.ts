/**
 * Pieces shared by the checkpoint readers: positioned reads that never trust a size before it is checked, element
 * counts with overflow checks, and dtype → float32 conversion on a fresh, aligned buffer.
 */
import { constants as bufferConstants } from 'node:buffer';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import { fromFloat16Array } from '../../runtime/float16.js';
import { CheckpointError, DTYPE_BYTES, type StoredDtype } from '../tensor-file.js';

export const STORED_DTYPES: ReadonlySet<string> = new Set(Object.keys(DTYPE_BYTES));

export function isStoredDtype(s: unknown): s is StoredDtype {
  return typeof s === 'string' && STORED_DTYPES.has(s);
}

/** Typed-array views below assume the host is little-endian, as every file is. */
export function assertLittleEndianHost(file: string): void {
  if (os.endianness() !== 'LE') throw new CheckpointError(`${file}: reading checkpoints needs a little-endian host`, file);
}

/**
 * `length` bytes at `position` into a fresh buffer (its own ArrayBuffer, offset 0, so any typed-array view fits).
 * The caller has already checked `position + length` against the file size; a short read still means the file
 * changed or was truncated, and is refused rather than returned short.
 */
export async function readAt(fh: FileHandle, file: string, position: number, length: number, what: string): Promise<Uint8Array> {
  if (!Number.isSafeInteger(position) || !Number.isSafeInteger(length) || position < 0 || length < 0) {
    throw new CheckpointError(`${file}: ${what}: bad byte range ${position}+${length}`, file);
  }
  if (length > bufferConstants.MAX_LENGTH) {
    throw new CheckpointError(`${file}: ${what}: ${length} bytes is more than one buffer can hold`, file);
  }
  const out = new Uint8Array(new ArrayBuffer(length));
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(out, done, Math.min(length - done, 1 << 30), position + done);
    if (bytesRead === 0) throw new CheckpointError(`${file}: ${what}: file ends at byte ${position + done}, expected ${length - done} more bytes (truncated?)`, file);
    done += bytesRead;
  }
  return out;
}

/**
 * Product of `shape` as a safe integer, refusing negative or non-integer dimensions and products whose byte size
 * (× `elementBytes`) would pass 2^53.
 */
export function checkedElementCount(shape: readonly unknown[], elementBytes: number, file: string, what: string): number {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new CheckpointError(`${file}: ${what}: bad shape [${shape.map(String).join(', ')}] (dimensions must be non-negative integers)`, file);
    }
    n *= d;
    if (n * elementBytes > Number.MAX_SAFE_INTEGER) {
      throw new CheckpointError(`${file}: ${what}: shape [${shape.join(', ')}] is too large (byte size overflows 2^53)`, file);
    }
  }
  return n;
}

/** `bytes` (fresh buffer from readAt, little-endian elements of `dtype`) converted to float32. */
export function bytesToFloat32(dtype: StoredDtype, bytes: Uint8Array): Float32Array {
  const size = DTYPE_BYTES[dtype];
  const n = bytes.byteLength / size;
  // Views need byteOffset % size == 0; copy when handed a buffer that is not our own.
  const b = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const buf = b.buffer;
  const off = b.byteOffset;
  switch (dtype) {
    case 'F32':
      return new Float32Array(buf.slice(off, off + b.byteLength));
    case 'F16':
      return fromFloat16Array(new Uint16Array(buf, off, n));
    case 'BF16': {
      const src = new Uint16Array(buf, off, n);
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = src[i]! << 16;
      return out;
    }
    case 'F64':
      return Float32Array.from(new Float64Array(buf, off, n));
    case 'I64': {
      const src = new BigInt64Array(buf, off, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = Number(src[i]!);
      return out;
    }
    case 'I32':
      return Float32Array.from(new Int32Array(buf, off, n));
    case 'I16':
      return Float32Array.from(new Int16Array(buf, off, n));
    case 'I8':
      return Float32Array.from(new Int8Array(buf, off, n));
    case 'U8':
      return Float32Array.from(new Uint8Array(buf, off, n));
    case 'BOOL': {
      const src = new Uint8Array(buf, off, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = src[i] !== 0 ? 1 : 0;
      return out;
    }
  }
}
