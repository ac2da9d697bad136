import { endianness } from 'node:os';
import type { GraphBuilder, WeightFileWriter } from '../onnx-writer/graph-builder.js';
import { DataType, float32ToBytes, type DataTypeCode } from '../onnx-writer/graph-builder.js';
import { CheckpointError, type TensorFile } from './tensor-file.js';
import { toFloat16Array } from '../runtime/float16.js';

/**
 * One component's tensors under canonical names (the LDM module path without the checkpoint's prefix, e.g. the
 * UNet's `input_blocks.1.1.proj_in.weight`), whatever layout and prefix the file used and whether EMA was chosen.
 */
export interface Weights {
  has(name: string): boolean;
  shape(name: string): readonly number[];
  float32(name: string): Promise<Float32Array>;
  names(): Iterable<string>;
}

/** Precision of a built graph's weights and activations. */
export type GraphPrecision = 'float32' | 'float16';

/** ONNX raw data is little-endian: on such hosts (all of Node's targets in practice) a float array is its own bytes. */
const LITTLE_ENDIAN = endianness() === 'LE';

/** Tensors under this many bytes stay inside model.onnx: a side-file entry for a bias of 4 floats is all overhead. */
const INLINE_BYTES = 1024;

/**
 * Streams checkpoint weights into a graph's side file one tensor at a time: each is read, optionally transformed
 * (transposed, split, reshaped), converted to the graph's precision, written and dropped.
 */
export class GraphWeights {
  constructor(
    readonly builder: GraphBuilder,
    readonly weights: Weights,
    private readonly out: WeightFileWriter,
    readonly precision: GraphPrecision,
  ) {}

  get dataType(): DataTypeCode {
    return this.precision === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  }

  /** The checkpoint tensor `name` as an initializer, optionally transformed first. Returns the initializer's name. */
  async param(
    name: string,
    transform?: (data: Float32Array, shape: readonly number[]) => { data: Float32Array; dims: readonly number[] },
  ): Promise<string> {
    const shape = this.weights.shape(name);
    const raw = await this.weights.float32(name);
    const { data, dims } = transform ? transform(raw, shape) : { data: raw, dims: shape };
    return this.constant(name, data, dims);
  }

  /** A float tensor computed here (e.g. a fused or reshaped weight), in the graph's precision. */
  async constant(name: string, data: Float32Array, dims: readonly number[]): Promise<string> {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new RangeError(`${name}: ${data.length} values do not fill [${dims.join(', ')}]`);
    const bytes = this.precision === 'float16'
      ? new Uint8Array(toFloat16Array(data).buffer)
      : LITTLE_ENDIAN ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : float32ToBytes(data);
    const initName = this.builder.uniqueName(name);
    if (bytes.byteLength < INLINE_BYTES) return this.builder.addInitializerRaw(initName, this.dataType, dims, bytes);
    return this.builder.addExternalInitializer(initName, this.dataType, dims, await this.out.append(bytes));
  }
}

/** The tensors of `file` whose names start with `prefix`, under the rest of their name (e.g. `model.diffusion_model.`). */
export function prefixedWeights(file: TensorFile, prefix: string): Weights {
  const byName = new Map<string, string>();
  for (const stored of file.tensors.keys()) if (stored.startsWith(prefix)) byName.set(stored.slice(prefix.length), stored);
  return mappedWeights(file, byName);
}

/** A view of `file` under canonical names: `byName` maps each canonical name to the stored one. */
export function mappedWeights(file: TensorFile, byName: ReadonlyMap<string, string>): Weights {
  const stored = (name: string): string => {
    const s = byName.get(name);
    if (s === undefined) throw new CheckpointError(`${file.path}: the checkpoint has no tensor for ${name}`, file.path);
    return s;
  };
  return {
    has: (name) => byName.has(name),
    shape: (name) => file.tensors.get(stored(name))!.shape,
    float32: (name) => file.readFloat32(stored(name)),
    names: () => byName.keys(),
  };
}
