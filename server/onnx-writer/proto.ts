// Minimal protobuf encoder for the subset of onnx.proto (IR version 8) needed to
// write small inference graphs. Field numbers follow onnx/onnx.proto; only
// encoding is implemented because the reader is always ONNX Runtime.

export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;
export type DataTypeCode = (typeof DataType)[keyof typeof DataType];

export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
} as const;
export type AttributeTypeCode = (typeof AttributeType)[keyof typeof AttributeType];

export const DataLocation = { DEFAULT: 0, EXTERNAL: 1 } as const;
export type DataLocationCode = (typeof DataLocation)[keyof typeof DataLocation];

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;

const textEncoder = new TextEncoder();

/** Append-only byte sink; chunks are concatenated once at the end. */
export class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private length = 0;

  get byteLength(): number {
    return this.length;
  }

  private push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.length += bytes.length;
  }

  /** Unsigned varint; negative values are written as 64-bit two's complement, as protobuf int64/int32 require. */
  varint(value: number | bigint): this {
    let v: bigint;
    if (typeof value === 'bigint') {
      v = BigInt.asUintN(64, value);
    } else {
      if (!Number.isSafeInteger(value)) throw new RangeError(`varint: ${value} is not a safe integer`);
      if (value >= 0 && value < 0x80) {
        this.push(Uint8Array.of(value));
        return this;
      }
      v = BigInt.asUintN(64, BigInt(value));
    }
    const out: number[] = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Uint8Array.from(out));
    return this;
  }

  tag(field: number, wireType: number): this {
    return this.varint(field * 8 + wireType);
  }

  bytes(bytes: Uint8Array): this {
    this.push(bytes);
    return this;
  }

  // --- field helpers -------------------------------------------------------

  int64Field(field: number, value: number | bigint): this {
    return this.tag(field, WIRE_VARINT).varint(value);
  }

  floatField(field: number, value: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    return this.tag(field, WIRE_FIXED32).bytes(b);
  }

  doubleField(field: number, value: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, value, true);
    return this.tag(field, WIRE_FIXED64).bytes(b);
  }

  bytesField(field: number, value: Uint8Array): this {
    return this.tag(field, WIRE_LEN).varint(value.length).bytes(value);
  }

  stringField(field: number, value: string): this {
    return this.bytesField(field, textEncoder.encode(value));
  }

  /**
   * Embedded message. An empty message is still emitted, which matters for
   * TensorShapeProto: a present-but-empty shape means rank 0, an absent one means unknown rank.
   */
  messageField(field: number, message: Uint8Array): this {
    return this.bytesField(field, message);
  }

  packedFloatField(field: number, values: ArrayLike<number>): this {
    if (values.length === 0) return this;
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < values.length; i++) dv.setFloat32(i * 4, values[i] ?? 0, true);
    return this.bytesField(field, b);
  }

  packedVarintField(field: number, values: ArrayLike<number | bigint>): this {
    if (values.length === 0) return this;
    const inner = new ProtoWriter();
    for (let i = 0; i < values.length; i++) inner.varint(values[i] ?? 0);
    return this.bytesField(field, inner.finish());
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

// --- message shapes ----------------------------------------------------------

export interface StringStringEntry {
  key: string;
  value: string;
}

export interface TensorProto {
  name?: string;
  dims: readonly number[];
  dataType: DataTypeCode;
  /** Little-endian element bytes; preferred for initializers because it is compact and unambiguous. */
  rawData?: Uint8Array;
  floatData?: ArrayLike<number>;
  int32Data?: ArrayLike<number>;
  int64Data?: ArrayLike<number | bigint>;
  /** Set together with dataLocation EXTERNAL; keys: location, offset, length (optionally checksum). */
  externalData?: readonly StringStringEntry[];
  dataLocation?: DataLocationCode;
  docString?: string;
}

export interface AttributeProto {
  name: string;
  type: AttributeTypeCode;
  f?: number;
  i?: number | bigint;
  s?: string | Uint8Array;
  t?: TensorProto;
  floats?: ArrayLike<number>;
  ints?: ArrayLike<number | bigint>;
  strings?: readonly (string | Uint8Array)[];
}

export interface NodeProto {
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  opType: string;
  domain?: string;
  attributes?: readonly AttributeProto[];
  docString?: string;
}

/** A dimension: a number is dim_value, a string is dim_param (symbolic). */
export type Dim = number | string;

export interface ValueInfoProto {
  name: string;
  elemType: DataTypeCode;
  /** `[]` declares a rank-0 tensor; `null` leaves the shape (and rank) unknown. */
  shape: readonly Dim[] | null;
  docString?: string;
}

export interface GraphProto {
  name: string;
  nodes: readonly NodeProto[];
  initializers: readonly TensorProto[];
  inputs: readonly ValueInfoProto[];
  outputs: readonly ValueInfoProto[];
  valueInfo?: readonly ValueInfoProto[];
  docString?: string;
}

export interface OperatorSetId {
  domain: string;
  version: number;
}

export interface ModelProto {
  irVersion: number;
  opsetImports: readonly OperatorSetId[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: number;
  docString?: string;
  graph: GraphProto;
  metadataProps?: readonly StringStringEntry[];
}

// --- encoders ----------------------------------------------------------------

function toBytes(s: string | Uint8Array): Uint8Array {
  return typeof s === 'string' ? textEncoder.encode(s) : s;
}

export function encodeStringStringEntry(e: StringStringEntry): Uint8Array {
  return new ProtoWriter().stringField(1, e.key).stringField(2, e.value).finish();
}

export function encodeTensor(t: TensorProto): Uint8Array {
  const w = new ProtoWriter();
  w.packedVarintField(1, t.dims);
  w.int64Field(2, t.dataType);
  if (t.floatData) w.packedFloatField(4, t.floatData);
  if (t.int32Data) w.packedVarintField(5, t.int32Data);
  if (t.int64Data) w.packedVarintField(7, t.int64Data);
  if (t.name !== undefined) w.stringField(8, t.name);
  if (t.rawData) w.bytesField(9, t.rawData);
  if (t.docString !== undefined) w.stringField(12, t.docString);
  for (const e of t.externalData ?? []) w.messageField(13, encodeStringStringEntry(e));
  if (t.dataLocation !== undefined && t.dataLocation !== DataLocation.DEFAULT) w.int64Field(14, t.dataLocation);
  return w.finish();
}

export function encodeAttribute(a: AttributeProto): Uint8Array {
  const w = new ProtoWriter();
  w.stringField(1, a.name);
  if (a.f !== undefined) w.floatField(2, a.f);
  if (a.i !== undefined) w.int64Field(3, a.i);
  if (a.s !== undefined) w.bytesField(4, toBytes(a.s));
  if (a.t !== undefined) w.messageField(5, encodeTensor(a.t));
  if (a.floats) w.packedFloatField(7, a.floats);
  if (a.ints) w.packedVarintField(8, a.ints);
  for (const s of a.strings ?? []) w.bytesField(9, toBytes(s));
  w.int64Field(20, a.type);
  return w.finish();
}

export function encodeNode(n: NodeProto): Uint8Array {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.stringField(1, i);
  for (const o of n.outputs) w.stringField(2, o);
  if (n.name !== undefined) w.stringField(3, n.name);
  w.stringField(4, n.opType);
  for (const a of n.attributes ?? []) w.messageField(5, encodeAttribute(a));
  if (n.docString !== undefined) w.stringField(6, n.docString);
  if (n.domain !== undefined && n.domain !== '') w.stringField(7, n.domain);
  return w.finish();
}

export function encodeTensorShape(shape: readonly Dim[]): Uint8Array {
  const w = new ProtoWriter();
  for (const d of shape) {
    const dw = new ProtoWriter();
    if (typeof d === 'number') dw.int64Field(1, d);
    else dw.stringField(2, d);
    w.messageField(1, dw.finish());
  }
  return w.finish();
}

export function encodeValueInfo(v: ValueInfoProto): Uint8Array {
  const tensorType = new ProtoWriter().int64Field(1, v.elemType);
  if (v.shape !== null) tensorType.messageField(2, encodeTensorShape(v.shape));
  const typeProto = new ProtoWriter().messageField(1, tensorType.finish()).finish();
  const w = new ProtoWriter().stringField(1, v.name).messageField(2, typeProto);
  if (v.docString !== undefined) w.stringField(3, v.docString);
  return w.finish();
}

export function encodeGraph(g: GraphProto): Uint8Array {
  const w = new ProtoWriter();
  for (const n of g.nodes) w.messageField(1, encodeNode(n));
  w.stringField(2, g.name);
  for (const t of g.initializers) w.messageField(5, encodeTensor(t));
  if (g.docString !== undefined) w.stringField(10, g.docString);
  for (const i of g.inputs) w.messageField(11, encodeValueInfo(i));
  for (const o of g.outputs) w.messageField(12, encodeValueInfo(o));
  for (const v of g.valueInfo ?? []) w.messageField(13, encodeValueInfo(v));
  return w.finish();
}

export function encodeOperatorSetId(o: OperatorSetId): Uint8Array {
  const w = new ProtoWriter();
  if (o.domain !== '') w.stringField(1, o.domain);
  w.int64Field(2, o.version);
  return w.finish();
}

export function encodeModel(m: ModelProto): Uint8Array {
  const w = new ProtoWriter();
  w.int64Field(1, m.irVersion);
  if (m.producerName !== undefined) w.stringField(2, m.producerName);
  if (m.producerVersion !== undefined) w.stringField(3, m.producerVersion);
  if (m.domain !== undefined) w.stringField(4, m.domain);
  if (m.modelVersion !== undefined) w.int64Field(5, m.modelVersion);
  if (m.docString !== undefined) w.stringField(6, m.docString);
  w.messageField(7, encodeGraph(m.graph));
  for (const o of m.opsetImports) w.messageField(8, encodeOperatorSetId(o));
  for (const p of m.metadataProps ?? []) w.messageField(14, encodeStringStringEntry(p));
  return w.finish();
}
