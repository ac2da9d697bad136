/**
 * What every checkpoint reader (safetensors, torch zip) offers: a table of tensors read lazily by name, so a
 * multi-GB file is never held in memory. Names are kept in a Map: a file from a stranger may name a tensor
 * `__proto__`.
 */

/** Element types as safetensors spells them; torch storages map onto the same names. */
export type StoredDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

export const DTYPE_BYTES: Readonly<Record<StoredDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

export interface StoredTensor {
  readonly name: string;
  readonly dtype: StoredDtype;
  readonly shape: readonly number[];
  /** Bytes of the tensor's elements in C order (product of shape × element size). */
  readonly byteLength: number;
}

export interface TensorFile {
  readonly path: string;
  readonly format: 'safetensors' | 'torch';
  /** Every tensor of the file, by its full stored name. */
  readonly tensors: ReadonlyMap<string, StoredTensor>;
  /** safetensors `__metadata__`, or null. */
  readonly metadata: ReadonlyMap<string, string> | null;
  /** Size of the file in bytes. */
  readonly bytes: number;
  /** The tensor's elements, little-endian, C order, contiguous, in a fresh buffer. */
  readBytes(name: string): Promise<Uint8Array>;
  /** The tensor's elements converted to float32 (F16, BF16, F64 and integers convert; BOOL → 0/1). */
  readFloat32(name: string): Promise<Float32Array>;
  close(): Promise<void>;
}

/** A file that is not a usable checkpoint, with a message that says why; never a crash. */
export class CheckpointError extends Error {
  constructor(message: string, readonly file: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}
