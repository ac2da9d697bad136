import { AsyncLocalStorage } from 'node:async_hooks';
import { copyFile, link, mkdir, rm } from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';
import type { ExternalRef, GraphBuilder, WeightFileWriter } from '../onnx-writer/graph-builder.js';
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

/** A GraphWeights transform: a tensor (and its shape) → the initializer's data and dims. */
export type WeightTransform = (data: Float32Array, shape: readonly number[]) => { data: Float32Array; dims: readonly number[] };

/**
 * Streams checkpoint weights into a graph's side file one tensor at a time: each is read, optionally transformed
 * (transposed, split, reshaped), converted to the graph's precision, written and dropped.
 *
 * In patch mode (a WeightPatch given, or one made current by `withWeightPatch`), only the tensors `changed` names
 * are read and written; every other one becomes a reference into the base build's side file (see WeightPatch).
 */
export class GraphWeights {
  constructor(
    readonly builder: GraphBuilder,
    readonly weights: Weights,
    private readonly out: WeightFileWriter,
    readonly precision: GraphPrecision,
    readonly patch: WeightPatch | null = currentWeightPatch(),
  ) {}

  get dataType(): DataTypeCode {
    return this.precision === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  }

  private get elementBytes(): number {
    return this.precision === 'float16' ? 2 : 4;
  }

  /** The checkpoint tensor `name` as an initializer, optionally transformed first. Returns the initializer's name. */
  async param(name: string, transform?: WeightTransform): Promise<string> {
    const shape = this.weights.shape(name);
    if (this.patch !== null && !this.patch.changed(name)) {
      // Same bytes as the base build: its side-file slot is referenced; nothing is read. Tensors small enough to
      // stay inline are read as usual (the base build inlined them too).
      const dims = transform ? this.patch.transformDims(transform, shape) : shape;
      const byteLength = elementCount(dims) * this.elementBytes;
      if (byteLength >= INLINE_BYTES) {
        return this.builder.addExternalInitializer(this.builder.uniqueName(name), this.dataType, dims, this.patch.reference(this.out, byteLength));
      }
    }
    const raw = await this.weights.float32(name);
    const { data, dims } = transform ? transform(raw, shape) : { data: raw, dims: shape };
    return this.constant(name, data, dims);
  }

  /**
   * A float tensor computed here (e.g. a fused or reshaped weight), in the graph's precision. In patch mode a
   * constant named `<tensor>.<part>` (a split of the checkpoint tensor `<tensor>`, as the GEGLU and fused-QKV
   * emitters name them) whose tensor is unchanged references the base build's bytes; any other is written.
   */
  async constant(name: string, data: Float32Array, dims: readonly number[]): Promise<string> {
    const count = dims.reduce((a, b) => a * b, 1);
    if (count !== data.length) throw new RangeError(`${name}: ${data.length} values do not fill [${dims.join(', ')}]`);
    const initName = this.builder.uniqueName(name);
    if (this.patch !== null && count * this.elementBytes >= INLINE_BYTES) {
      const source = sourceTensor(this.weights, name);
      if (source !== null && !this.patch.changed(source)) {
        return this.builder.addExternalInitializer(initName, this.dataType, dims, this.patch.reference(this.out, count * this.elementBytes));
      }
    }
    const bytes = this.precision === 'float16'
      ? new Uint8Array(toFloat16Array(data).buffer)
      : LITTLE_ENDIAN ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : float32ToBytes(data);
    if (bytes.byteLength < INLINE_BYTES) return this.builder.addInitializerRaw(initName, this.dataType, dims, bytes);
    const ref = await this.out.append(bytes);
    this.patch?.written(this.out, bytes.byteLength);
    return this.builder.addExternalInitializer(initName, this.dataType, dims, ref);
  }
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** The checkpoint tensor a constant named `<tensor>(.<part>)*` was made from, or null. */
function sourceTensor(weights: Weights, name: string): string | null {
  for (let n = name; ; ) {
    if (weights.has(n)) return n;
    const dot = n.lastIndexOf('.');
    if (dot <= 0) return null;
    n = n.slice(0, dot);
  }
}

/* ------------------------------------------------------------------ patch mode */

export interface WeightPatchOptions {
  /**
   * File name, in the new model's folder, of the base build's side file. ONNX Runtime 1.30 refuses external data
   * outside the model's folder (`../` and absolute locations both fail validation, and so does a symlink pointing
   * out): hard-link the base weights.pb there (`linkBaseWeights`).
   */
  readonly baseLocation: string;
  /** Whether the canonical tensor `name` differs from the base build's (a LoRA's patched names). */
  readonly changed: (name: string) => boolean;
  /** The base side file's alignment: WeightFileWriter's default, 64. */
  readonly alignment?: number;
}

/**
 * Patch mode for GraphWeights: a rebuild that re-reads and re-writes only the tensors that changed. The graph
 * builders are deterministic (the same Weights names and shapes, architecture, precision and op choices give the
 * same sequence of initializers), so the base build's side-file layout is recomputed here without reading
 * anything: a virtual cursor per side file advances exactly as WeightFileWriter.append did (pad to the alignment,
 * then the tensor's bytes) for every external initializer, changed or not. Unchanged ones reference the base
 * file at that offset; changed ones are appended to the new (small) side file.
 *
 * The base build must have used the same builder code, architecture, precision and op choices, and `changed`
 * must be true for every tensor whose value differs. One WeightPatch serves one graph build (one base file).
 */
export class WeightPatch {
  private readonly cursors = new WeakMap<WeightFileWriter, number>();
  private readonly dimsCache = new WeakMap<WeightTransform, Map<string, readonly number[]>>();
  private readonly alignment: number;
  /** Tensors (and bytes) referenced in the base file, and written to the new side file. */
  readonly stats = { referenced: 0, referencedBytes: 0, written: 0, writtenBytes: 0 };

  constructor(readonly options: WeightPatchOptions) {
    if (options.baseLocation === '' || /[/\\]/.test(options.baseLocation)) {
      throw new RangeError(`the base side file must be a bare file name in the model's folder (ONNX Runtime refuses others): ${JSON.stringify(options.baseLocation)}`);
    }
    this.alignment = options.alignment ?? 64;
  }

  changed(name: string): boolean {
    return this.options.changed(name);
  }

  /** The base build's slot for the next external tensor of `length` bytes written through `out`. */
  private place(out: WeightFileWriter, length: number): number {
    let at = this.cursors.get(out) ?? 0;
    at += (this.alignment - (at % this.alignment)) % this.alignment;
    this.cursors.set(out, at + length);
    return at;
  }

  /** An unchanged tensor: where its bytes lie in the base file. */
  reference(out: WeightFileWriter, length: number): ExternalRef {
    const offset = this.place(out, length);
    this.stats.referenced++;
    this.stats.referencedBytes += length;
    return { location: this.options.baseLocation, offset, length };
  }

  /** A changed tensor was appended to `out`: its slot in the base layout is skipped. */
  written(out: WeightFileWriter, length: number): void {
    this.place(out, length);
    this.stats.written++;
    this.stats.writtenBytes += length;
  }

  /**
   * The dims `transform` gives a tensor of `shape`, found without the tensor: the transform is run once on zeros
   * of that shape and the answer kept per (transform, shape). Transforms' output dims must depend on the input
   * shape only (every builder's does: transposes, reshapes, fixed slices).
   */
  transformDims(transform: WeightTransform, shape: readonly number[]): readonly number[] {
    const key = shape.join(',');
    let byShape = this.dimsCache.get(transform);
    if (byShape === undefined) {
      byShape = new Map();
      this.dimsCache.set(transform, byShape);
    }
    let dims = byShape.get(key);
    if (dims === undefined) {
      dims = [...transform(new Float32Array(elementCount(shape)), shape).dims];
      byShape.set(key, dims);
    }
    return dims;
  }
}

const patchContext = new AsyncLocalStorage<WeightPatch>();

/** The WeightPatch `withWeightPatch` made current, or null (a normal build). */
export function currentWeightPatch(): WeightPatch | null {
  return patchContext.getStore() ?? null;
}

/**
 * Runs one graph build (e.g. `buildUnetGraph(...)`) in patch mode: every GraphWeights created inside `fn` uses
 * `patch`. The builders need no option for it. Returns what `fn` returns.
 */
export function withWeightPatch<T>(patch: WeightPatch | WeightPatchOptions, fn: () => Promise<T>): Promise<T> {
  return patchContext.run(patch instanceof WeightPatch ? patch : new WeightPatch(patch), fn);
}

/**
 * Makes the base build's side file `baseWeightsPath` visible as `name` in `modelDir` (the patched model's folder)
 * by a hard link, so ONNX Runtime accepts it as external data; copies it when the two folders are on different
 * file systems. Replace the base file by unlink + new file, never by rewriting it in place: the link shares it.
 */
export async function linkBaseWeights(baseWeightsPath: string, modelDir: string, name = 'base-weights.pb'): Promise<{ path: string; linked: boolean }> {
  const target = path.join(modelDir, name);
  await mkdir(modelDir, { recursive: true });
  await rm(target, { force: true });
  try {
    await link(baseWeightsPath, target);
    return { path: target, linked: true };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
    await copyFile(baseWeightsPath, target);
    return { path: target, linked: false };
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
