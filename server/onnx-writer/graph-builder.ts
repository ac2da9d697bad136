import { mkdir, open, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import {
  AttributeType,
  DataLocation,
  DataType,
  encodeModel,
  type AttributeProto,
  type DataTypeCode,
  type Dim,
  type ModelProto,
  type NodeProto,
  type TensorProto,
  type ValueInfoProto,
} from './proto.js';

export { DataType, type DataTypeCode, type Dim } from './proto.js';

export const DEFAULT_IR_VERSION = 8;
export const DEFAULT_OPSET = 17;

/**
 * Attribute values are tagged because a JS number cannot tell ONNX whether it
 * is an INT or a FLOAT attribute, and ops reject the wrong one.
 */
export type AttrValue =
  | { kind: 'int'; value: number | bigint }
  | { kind: 'float'; value: number }
  | { kind: 'ints'; value: readonly (number | bigint)[] }
  | { kind: 'floats'; value: readonly number[] }
  | { kind: 'string'; value: string }
  | { kind: 'tensor'; value: TensorProto };

export const attr = {
  int: (value: number | bigint): AttrValue => ({ kind: 'int', value }),
  float: (value: number): AttrValue => ({ kind: 'float', value }),
  ints: (value: readonly (number | bigint)[]): AttrValue => ({ kind: 'ints', value }),
  floats: (value: readonly number[]): AttrValue => ({ kind: 'floats', value }),
  string: (value: string): AttrValue => ({ kind: 'string', value }),
  tensor: (value: TensorProto): AttrValue => ({ kind: 'tensor', value }),
};

export type Attrs = Readonly<Record<string, AttrValue>>;

function toAttributeProto(name: string, a: AttrValue): AttributeProto {
  switch (a.kind) {
    case 'int':
      return { name, type: AttributeType.INT, i: a.value };
    case 'float':
      return { name, type: AttributeType.FLOAT, f: a.value };
    case 'ints':
      return { name, type: AttributeType.INTS, ints: a.value };
    case 'floats':
      return { name, type: AttributeType.FLOATS, floats: a.value };
    case 'string':
      return { name, type: AttributeType.STRING, s: a.value };
    case 'tensor':
      return { name, type: AttributeType.TENSOR, t: a.value };
  }
}

function elementCount(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function checkDims(name: string, dims: readonly number[], length: number): void {
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${name}: invalid dim ${d}`);
  }
  const n = elementCount(dims);
  if (n !== length) throw new RangeError(`${name}: ${length} values do not fill dims [${dims.join(', ')}] (${n})`);
}

/** Little-endian regardless of host byte order, since raw_data is defined as LE. */
export function float32ToBytes(data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setFloat32(i * 4, data[i] ?? 0, true);
  return out;
}

export function int64ToBytes(data: ArrayLike<number | bigint>): Uint8Array {
  const out = new Uint8Array(data.length * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setBigInt64(i * 8, BigInt(data[i] ?? 0), true);
  return out;
}

export function int32ToBytes(data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(data.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setInt32(i * 4, data[i] ?? 0, true);
  return out;
}

export function uint16ToBytes(data: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(data.length * 2);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) dv.setUint16(i * 2, data[i] ?? 0, true);
  return out;
}

export interface ExternalDataOptions {
  /** File name recorded in the model, resolved by ONNX Runtime relative to the model file. */
  location: string;
  /** Initializers whose raw data is larger than this many bytes move to the side file. Default 1024 (as onnx.save). */
  threshold?: number;
  /** Offset alignment inside the side file. Default 64. */
  alignment?: number;
}

export interface SerializeOptions {
  externalData?: ExternalDataOptions | null;
}

export interface SerializedModel {
  model: Buffer;
  /** Present only when externalData was requested; may be empty when no initializer crossed the threshold. */
  externalData?: { location: string; data: Buffer; tensors: string[] };
}

export interface GraphBuilderOptions {
  graphName?: string;
  opset?: number;
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
  /** Operator sets beside the default domain's, e.g. `{ domain: 'com.microsoft', version: 1 }` for contrib ops. */
  extraOpsets?: readonly { domain: string; version: number }[];
}

/**
 * Accumulates a single ONNX graph and serialises it.
 * Names are not validated against each other; ONNX Runtime's loader does that
 * and gives better messages than we could.
 */
export class GraphBuilder {
  readonly graphName: string;
  readonly opset: number;
  readonly irVersion: number;
  private readonly producerName: string;
  private readonly producerVersion: string;
  private readonly docString: string | undefined;
  private readonly extraOpsets: readonly { domain: string; version: number }[];
  private readonly nodes: NodeProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly inputs: ValueInfoProto[] = [];
  private readonly outputs: ValueInfoProto[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;

  constructor(opts: GraphBuilderOptions = {}) {
    this.graphName = opts.graphName ?? 'graph';
    this.opset = opts.opset ?? DEFAULT_OPSET;
    this.irVersion = opts.irVersion ?? DEFAULT_IR_VERSION;
    this.producerName = opts.producerName ?? 'fusegraph-onnx-writer';
    this.producerVersion = opts.producerVersion ?? '0.1.0';
    this.docString = opts.docString;
    this.extraOpsets = opts.extraOpsets ?? [];
  }

  /**
   * A name not used so far (not reserved: the caller claims it by using it).
   * A counter rather than randomness keeps serialisation byte-identical across runs.
   */
  uniqueName(prefix: string): string {
    let name: string;
    do {
      name = `${prefix}_${this.counter++}`;
    } while (this.usedNames.has(name));
    return name;
  }

  private claim(name: string): string {
    if (this.usedNames.has(name)) throw new Error(`duplicate value name: ${name}`);
    this.usedNames.add(name);
    return name;
  }

  addInitializerRaw(name: string, dataType: DataTypeCode, dims: readonly number[], rawData: Uint8Array): string {
    this.claim(name);
    this.initializers.push({ name, dataType, dims: [...dims], rawData });
    return name;
  }

  /** An initializer whose bytes already lie in a side file (see WeightFileWriter); nothing is held in memory. */
  addExternalInitializer(name: string, dataType: DataTypeCode, dims: readonly number[], ref: ExternalRef): string {
    this.claim(name);
    this.initializers.push({
      name,
      dataType,
      dims: [...dims],
      dataLocation: DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: ref.location },
        { key: 'offset', value: String(ref.offset) },
        { key: 'length', value: String(ref.length) },
      ],
    });
    return name;
  }

  addFloatInitializer(name: string, data: Float32Array | readonly number[], dims: readonly number[]): string {
    checkDims(name, dims, data.length);
    return this.addInitializerRaw(name, DataType.FLOAT, dims, float32ToBytes(data));
  }

  addInt64Initializer(name: string, data: BigInt64Array | readonly (number | bigint)[], dims: readonly number[]): string {
    checkDims(name, dims, data.length);
    return this.addInitializerRaw(name, DataType.INT64, dims, int64ToBytes(data));
  }

  addInt32Initializer(name: string, data: Int32Array | readonly number[], dims: readonly number[]): string {
    checkDims(name, dims, data.length);
    return this.addInitializerRaw(name, DataType.INT32, dims, int32ToBytes(data));
  }

  /** `bits` are IEEE binary16 patterns. */
  addFloat16Initializer(name: string, bits: Uint16Array | readonly number[], dims: readonly number[]): string {
    checkDims(name, dims, bits.length);
    return this.addInitializerRaw(name, DataType.FLOAT16, dims, uint16ToBytes(bits));
  }

  /** Scalar/short-vector constants with auto-generated names. */
  constFloat(values: number | readonly number[], dims?: readonly number[]): string {
    const data = typeof values === 'number' ? [values] : values;
    return this.addFloatInitializer(this.uniqueName('const_f'), data, dims ?? (typeof values === 'number' ? [] : [data.length]));
  }

  constInt64(values: number | bigint | readonly (number | bigint)[], dims?: readonly number[]): string {
    const data = typeof values === 'object' ? values : [values];
    return this.addInt64Initializer(this.uniqueName('const_i'), data, dims ?? (typeof values === 'object' ? [data.length] : []));
  }

  addInput(name: string, elemType: DataTypeCode, shape: readonly Dim[] | null): string {
    this.claim(name);
    this.inputs.push({ name, elemType, shape: shape === null ? null : [...shape] });
    return name;
  }

  /** Outputs name values produced by nodes, so the name is not claimed here. */
  addOutput(name: string, elemType: DataTypeCode, shape: readonly Dim[] | null): string {
    this.outputs.push({ name, elemType, shape: shape === null ? null : [...shape] });
    return name;
  }

  /**
   * Adds a node. `outputs` may be explicit names or a count of auto-named outputs.
   * Use '' in `inputs` for an omitted optional input.
   */
  addNode(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[] | number = 1,
    attrs: Attrs = {},
    name?: string,
    domain?: string,
  ): string[] {
    const outNames =
      typeof outputs === 'number'
        ? Array.from({ length: outputs }, () => this.claim(this.uniqueName(opType.toLowerCase())))
        : outputs.map((o) => this.claim(o));
    const attributes = Object.keys(attrs)
      .sort()
      .map((k) => toAttributeProto(k, attrs[k] as AttrValue));
    this.nodes.push({
      opType,
      inputs: [...inputs],
      outputs: outNames,
      name: name ?? this.uniqueName(`n_${opType}`),
      attributes,
      ...(domain !== undefined && domain !== '' ? { domain } : {}),
    });
    return outNames;
  }

  /** Single-output convenience wrapper around addNode. */
  op(opType: string, inputs: readonly string[], attrs: Attrs = {}, output?: string): string {
    const [out] = this.addNode(opType, inputs, output === undefined ? 1 : [output], attrs);
    return out as string;
  }

  /** Single-output node of another operator domain (e.g. com.microsoft contrib ops). */
  opIn(domain: string, opType: string, inputs: readonly string[], attrs: Attrs = {}): string {
    const [out] = this.addNode(opType, inputs, 1, attrs, undefined, domain);
    return out as string;
  }

  toModelProto(initializers: readonly TensorProto[] = this.initializers): ModelProto {
    return {
      irVersion: this.irVersion,
      opsetImports: [{ domain: '', version: this.opset }, ...this.extraOpsets],
      producerName: this.producerName,
      producerVersion: this.producerVersion,
      ...(this.docString !== undefined ? { docString: this.docString } : {}),
      graph: {
        name: this.graphName,
        nodes: this.nodes,
        initializers,
        inputs: this.inputs,
        outputs: this.outputs,
      },
    };
  }

  serialize(opts: SerializeOptions = {}): SerializedModel {
    const ext = opts.externalData ?? null;
    if (ext === null) return { model: Buffer.from(encodeModel(this.toModelProto())) };

    if (ext.location === '' || ext.location.includes('/') || ext.location.includes('\\')) {
      throw new Error(`external data location must be a bare file name: ${JSON.stringify(ext.location)}`);
    }
    const threshold = ext.threshold ?? 1024;
    const alignment = ext.alignment ?? 64;
    const parts: Uint8Array[] = [];
    const moved: string[] = [];
    let offset = 0;
    const initializers = this.initializers.map((t): TensorProto => {
      if (!t.rawData || t.rawData.length <= threshold) return t;
      const pad = (alignment - (offset % alignment)) % alignment;
      if (pad > 0) parts.push(new Uint8Array(pad));
      offset += pad;
      parts.push(t.rawData);
      const entry: TensorProto = {
        name: t.name,
        dims: t.dims,
        dataType: t.dataType,
        dataLocation: DataLocation.EXTERNAL,
        externalData: [
          { key: 'location', value: ext.location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(t.rawData.length) },
        ],
      };
      offset += t.rawData.length;
      moved.push(t.name ?? '');
      return entry;
    });
    return {
      model: Buffer.from(encodeModel(this.toModelProto(initializers))),
      externalData: { location: ext.location, data: Buffer.concat(parts), tensors: moved },
    };
  }

  /** Writes `filePath` and, if requested, the side file next to it. Returns the paths written. */
  async save(filePath: string, opts: SerializeOptions = {}): Promise<string[]> {
    const { model, externalData } = this.serialize(opts);
    const dir = path.dirname(filePath);
    await mkdir(dir, { recursive: true });
    await writeFile(filePath, model);
    const written = [filePath];
    if (externalData) {
      const p = path.join(dir, externalData.location);
      await writeFile(p, externalData.data);
      written.push(p);
    }
    return written;
  }
}

/** Where one initializer's bytes lie in a side file, as ONNX's external_data records it. */
export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

/**
 * Appends initializer bytes to a side file as they are produced, so a multi-GB model is written tensor by tensor
 * and never held whole in memory (GraphBuilder.serialize's external data concatenates everything at the end).
 */
export class WeightFileWriter {
  private offset = 0;
  private constructor(
    private readonly fh: FileHandle,
    readonly location: string,
    private readonly alignment: number,
  ) {}

  /** `location` is the file name recorded in the model: ONNX Runtime resolves it next to the model file. */
  static async create(filePath: string, alignment = 64): Promise<WeightFileWriter> {
    await mkdir(path.dirname(filePath), { recursive: true });
    return new WeightFileWriter(await open(filePath, 'w'), path.basename(filePath), alignment);
  }

  get bytesWritten(): number {
    return this.offset;
  }

  async append(bytes: Uint8Array): Promise<ExternalRef> {
    const pad = (this.alignment - (this.offset % this.alignment)) % this.alignment;
    if (pad > 0) {
      await this.fh.write(new Uint8Array(pad), 0, pad, this.offset);
      this.offset += pad;
    }
    const ref = { location: this.location, offset: this.offset, length: bytes.byteLength };
    for (let done = 0; done < bytes.byteLength; ) {
      const { bytesWritten } = await this.fh.write(bytes, done, bytes.byteLength - done, this.offset + done);
      done += bytesWritten;
    }
    this.offset += bytes.byteLength;
    return ref;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
