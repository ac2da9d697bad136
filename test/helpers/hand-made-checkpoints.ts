/**
 * Hand-assembled checkpoint pieces for the checkpoint reader tests: a ZIP/ZIP64 writer that can lie (sizes,
 * offsets, counts, names) and leave sparse holes, and a tiny pickle assembler. Nothing here needs python.
 */
import { open, truncate } from 'node:fs/promises';

// ---------------------------------------------------------------------------------------------------------------
// Pickle assembly

const enc = new TextEncoder();

export function cat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => (p instanceof Uint8Array ? p : Uint8Array.from(p)));
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of arrays) {
    out.set(a, at);
    at += a.length;
  }
  return out;
}

const le32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];

/** Opcodes as bytes, plus operand helpers. */
export const P = {
  proto: (v = 2) => [0x80, v],
  MARK: [0x28],
  STOP: [0x2e],
  POP: [0x30],
  DUP: [0x32],
  NONE: [0x4e],
  NEWTRUE: [0x88],
  NEWFALSE: [0x89],
  EMPTY_DICT: [0x7d],
  EMPTY_LIST: [0x5d],
  EMPTY_TUPLE: [0x29],
  TUPLE: [0x74],
  TUPLE1: [0x85],
  TUPLE2: [0x86],
  TUPLE3: [0x87],
  SETITEM: [0x73],
  SETITEMS: [0x75],
  APPEND: [0x61],
  APPENDS: [0x65],
  REDUCE: [0x52],
  BUILD: [0x62],
  NEWOBJ: [0x81],
  BINPERSID: [0x51],
  STACK_GLOBAL: [0x93],
  MEMOIZE: [0x94],
  binput: (i: number) => [0x71, i],
  binget: (i: number) => [0x68, i],
  int: (n: number) => (n >= 0 && n < 256 ? [0x4b, n] : [0x4a, ...le32(n)]),
  str: (s: string): Uint8Array => {
    const b = enc.encode(s);
    return cat([0x58, ...le32(b.length)], b);
  },
  global: (module: string, name: string): Uint8Array => cat([0x63], enc.encode(`${module}\n${name}\n`)),
};

/** `('storage', torch.<type>, key, 'cpu', numel)` BINPERSID. */
export function persid(key: string, numel: number, type = 'FloatStorage'): Uint8Array {
  return cat(P.MARK, P.str('storage'), P.global('torch', type), P.str(key), P.str('cpu'), P.int(numel), P.TUPLE, P.BINPERSID);
}

/** `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`. */
export function tensorPickle(key: string, numel: number, shape: number[], stride: number[], offset = 0, type = 'FloatStorage'): Uint8Array {
  const tuple = (xs: number[]): Uint8Array => cat(P.MARK, ...xs.map(P.int), P.TUPLE);
  return cat(
    P.global('torch._utils', '_rebuild_tensor_v2'),
    P.MARK,
    persid(key, numel, type),
    P.int(offset),
    tuple(shape),
    tuple(stride),
    P.NEWFALSE,
    P.global('collections', 'OrderedDict'),
    P.EMPTY_TUPLE,
    P.REDUCE,
    P.TUPLE,
    P.REDUCE,
  );
}

/** A whole pickle of a dict `{name: value-bytes}` (values are assembled pickle fragments). */
export function dictPickle(items: [string, Uint8Array | number[]][], protocol = 2): Uint8Array {
  return cat(P.proto(protocol), P.EMPTY_DICT, P.MARK, ...items.flatMap(([k, v]) => [P.str(k), v]), P.SETITEMS, P.STOP);
}

// ---------------------------------------------------------------------------------------------------------------
// ZIP assembly

export interface ZipEntrySpec {
  name: string;
  /** Bytes, or a run of zeros left as a sparse hole of this many bytes. */
  data: Uint8Array | { sparse: number };
  method?: number;
  /** Uncompressed size to declare when method != 0 (default: the data length). */
  uncompressedSize?: number;
  /** Name written in the local header (default: name). */
  localName?: string;
  /** Size written in the central directory (compressed and uncompressed), e.g. a lie of 100 GB. */
  claimSize?: number;
  /** Local header offset written in the central directory. */
  claimOffset?: number;
  /** Padding bytes in the local extra field (torch pads records to 64 bytes). */
  localExtra?: number;
}

export interface ZipSpec {
  /** Write ZIP64 records (extra fields for every entry, ZIP64 EOCD and locator). */
  zip64?: boolean;
  claimCount?: number;
  claimCdSize?: number;
  claimCdOffset?: number;
  comment?: string;
  /** Where the ZIP64 locator says the ZIP64 EOCD record is. */
  claimZip64RecordOffset?: number;
}

export interface ZipLayout {
  chunks: { at: number; bytes: Uint8Array }[];
  size: number;
}

class Out {
  chunks: { at: number; bytes: Uint8Array }[] = [];
  at = 0;
  put(bytes: Uint8Array | number[]): void {
    const b = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
    this.chunks.push({ at: this.at, bytes: b });
    this.at += b.length;
  }
  hole(n: number): void {
    this.at += n;
  }
}

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}
function u32(n: number): number[] {
  return le32(n >>> 0);
}
function u64(n: number | bigint): number[] {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return [...b];
}

export function zipLayout(entries: ZipEntrySpec[], spec: ZipSpec = {}): ZipLayout {
  const out = new Out();
  const central: number[][] = [];
  for (const e of entries) {
    const name = enc.encode(e.name);
    const localName = enc.encode(e.localName ?? e.name);
    const len = e.data instanceof Uint8Array ? e.data.length : e.data.sparse;
    const method = e.method ?? 0;
    const usize = e.uncompressedSize ?? len;
    const offset = out.at;
    const extra = e.localExtra ?? 0;
    const localExtra = extra > 0 ? [0x46, 0x42, ...u16(extra - 4), ...new Array<number>(extra - 4).fill(0x5a)] : [];
    out.put([...u32(0x04034b50), ...u16(spec.zip64 ? 45 : 20), ...u16(0), ...u16(method), ...u32(0), ...u32(0), ...u32(spec.zip64 ? 0xffffffff : len), ...u32(spec.zip64 ? 0xffffffff : usize), ...u16(localName.length), ...u16(localExtra.length), ...localName, ...localExtra]);
    if (e.data instanceof Uint8Array) out.put(e.data);
    else out.hole(e.data.sparse);
    const csz = e.claimSize ?? len;
    const usz = e.claimSize ?? usize;
    const lho = e.claimOffset ?? offset;
    const cextra = spec.zip64 ? [...u16(1), ...u16(24), ...u64(usz), ...u64(csz), ...u64(lho)] : [];
    if (!spec.zip64 && (csz > 0xfffffffe || usz > 0xfffffffe || lho > 0xfffffffe)) throw new RangeError('needs zip64');
    central.push([
      ...u32(0x02014b50), ...u16(spec.zip64 ? 45 : 20), ...u16(spec.zip64 ? 45 : 20), ...u16(0), ...u16(method), ...u32(0), ...u32(0),
      ...u32(spec.zip64 ? 0xffffffff : csz), ...u32(spec.zip64 ? 0xffffffff : usz), ...u16(name.length), ...u16(cextra.length), ...u16(0), ...u16(0), ...u16(0), ...u32(0),
      ...u32(spec.zip64 ? 0xffffffff : lho), ...name, ...cextra,
    ]);
  }
  const cdOffset = out.at;
  for (const c of central) out.put(c);
  const cdSize = out.at - cdOffset;
  const count = spec.claimCount ?? entries.length;
  const claimedCdSize = spec.claimCdSize ?? cdSize;
  const claimedCdOffset = spec.claimCdOffset ?? cdOffset;
  if (spec.zip64) {
    const rec = out.at;
    out.put([...u32(0x06064b50), ...u64(44), ...u16(45), ...u16(45), ...u32(0), ...u32(0), ...u64(count), ...u64(count), ...u64(claimedCdSize), ...u64(claimedCdOffset)]);
    out.put([...u32(0x07064b50), ...u32(0), ...u64(spec.claimZip64RecordOffset ?? rec), ...u32(1)]);
  }
  const comment = enc.encode(spec.comment ?? '');
  const sat = (n: number, max: number): number => (spec.zip64 ? max : n);
  out.put([
    ...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(sat(Math.min(count, 0xffff), 0xffff)), ...u16(sat(Math.min(count, 0xffff), 0xffff)),
    ...u32(sat(claimedCdSize, 0xffffffff)), ...u32(sat(claimedCdOffset, 0xffffffff)), ...u16(comment.length), ...comment,
  ]);
  return { chunks: out.chunks, size: out.at };
}

/** Writes a layout (holes stay sparse); `cutTo` truncates the file to fewer bytes. */
export async function writeLayout(path: string, layout: ZipLayout, cutTo?: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    for (const c of layout.chunks) await fh.write(c.bytes, 0, c.bytes.length, c.at);
  } finally {
    await fh.close();
  }
  await truncate(path, cutTo ?? layout.size);
}

export async function writeZip(path: string, entries: ZipEntrySpec[], spec?: ZipSpec, cutTo?: number): Promise<void> {
  await writeLayout(path, zipLayout(entries, spec), cutTo);
}

/** The entries of a minimal torch checkpoint under `top/`, its pickle given. */
export function torchEntries(pickle: Uint8Array, storages: Record<string, Uint8Array> = {}, top = 'archive'): ZipEntrySpec[] {
  return [
    { name: `${top}/data.pkl`, data: pickle },
    ...Object.entries(storages).map(([k, v]) => ({ name: `${top}/data/${k}`, data: v, localExtra: 12 })),
    { name: `${top}/version`, data: enc.encode('3\n') },
  ];
}

export const f32bytes = (xs: number[]): Uint8Array => new Uint8Array(new Float32Array(xs).buffer);
