/**
 * safetensors writer: the header first (JSON padded with spaces to a multiple of 8 bytes, like the reference
 * `prepare()`), then each tensor's bytes in turn, so only one tensor need be in memory at a time (pass `data` as a
 * function to produce it when its turn comes). Tensors are laid out by descending element size, then name, so each
 * starts at a multiple of its element size. Written to a temporary file beside `path` and renamed into place.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { DTYPE_BYTES, type StoredDtype } from '../tensor-file.js';

export interface SafetensorsWriteEntry {
  readonly name: string;
  readonly dtype: StoredDtype;
  readonly shape: readonly number[];
  /** Little-endian C-order elements (any typed array; BOOL as one byte per element), or a function producing them. */
  readonly data: ArrayBufferView | (() => ArrayBufferView | Promise<ArrayBufferView>);
}

export interface SafetensorsLayoutEntry {
  readonly entry: SafetensorsWriteEntry;
  readonly byteLength: number;
  /** Offset in the data region (data_offsets[0]). */
  readonly begin: number;
  /** Absolute file offset of the first byte. */
  readonly fileOffset: number;
}

export interface SafetensorsLayout {
  /** The first 8 + N bytes of the file: u64-LE N then the padded JSON header. */
  readonly head: Uint8Array;
  /** Entries in file order. */
  readonly entries: readonly SafetensorsLayoutEntry[];
  /** Total file size. */
  readonly fileBytes: number;
}

type Metadata = ReadonlyMap<string, string> | Readonly<Record<string, string>>;

/** Plans a file: the header bytes and where each tensor goes. Throws RangeError on a bad entry or duplicate name. */
export function safetensorsLayout(entries: Iterable<SafetensorsWriteEntry>, metadata?: Metadata): SafetensorsLayout {
  const list = [...entries];
  const seen = new Set<string>();
  for (const e of list) {
    if (e.name === '__metadata__') throw new RangeError('safetensors: a tensor cannot be named __metadata__');
    if (seen.has(e.name)) throw new RangeError(`safetensors: duplicate tensor name ${JSON.stringify(e.name)}`);
    seen.add(e.name);
    if (!(e.dtype in DTYPE_BYTES)) throw new RangeError(`safetensors: tensor ${JSON.stringify(e.name)}: unknown dtype ${String(e.dtype)}`);
    for (const d of e.shape) if (!Number.isSafeInteger(d) || d < 0) throw new RangeError(`safetensors: tensor ${JSON.stringify(e.name)}: bad shape [${e.shape.join(', ')}]`);
  }
  list.sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const parts: string[] = [];
  const meta = metadata instanceof Map ? [...metadata] : Object.entries(metadata ?? {});
  if (meta.length > 0) parts.push(`"__metadata__":{${meta.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(String(v))}`).join(',')}}`);
  let at = 0;
  const planned: { entry: SafetensorsWriteEntry; byteLength: number; begin: number }[] = [];
  for (const e of list) {
    const byteLength = e.shape.reduce((p, d) => p * d, 1) * DTYPE_BYTES[e.dtype];
    if (!Number.isSafeInteger(at + byteLength)) throw new RangeError(`safetensors: tensor ${JSON.stringify(e.name)} does not fit below 2^53 bytes`);
    parts.push(`${JSON.stringify(e.name)}:{"dtype":"${e.dtype}","shape":[${e.shape.join(',')}],"data_offsets":[${at},${at + byteLength}]}`);
    planned.push({ entry: e, byteLength, begin: at });
    at += byteLength;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const n = Math.ceil(json.length / 8) * 8;
  const head = Buffer.alloc(8 + n, 0x20);
  head.writeBigUInt64LE(BigInt(n), 0);
  json.copy(head, 8);
  return {
    head: new Uint8Array(head.buffer, head.byteOffset, head.length),
    entries: planned.map((p) => ({ ...p, fileOffset: 8 + n + p.begin })),
    fileBytes: 8 + n + at,
  };
}

/** Writes `entries` (any order; laid out as described above) and optional `__metadata__` to `path`. */
export async function writeSafetensors(path: string, entries: Iterable<SafetensorsWriteEntry>, metadata?: Metadata): Promise<void> {
  const layout = safetensorsLayout(entries, metadata);
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    const write = async (bytes: Uint8Array): Promise<void> => {
      let done = 0;
      while (done < bytes.byteLength) {
        const { bytesWritten } = await fh.write(bytes, done, Math.min(bytes.byteLength - done, 1 << 30));
        done += bytesWritten;
      }
    };
    await write(layout.head);
    for (const { entry, byteLength } of layout.entries) {
      const view = typeof entry.data === 'function' ? await entry.data() : entry.data;
      if (view.byteLength !== byteLength) {
        throw new RangeError(`safetensors: tensor ${JSON.stringify(entry.name)}: ${view.byteLength} bytes given but ${entry.dtype} × [${entry.shape.join(', ')}] needs ${byteLength}`);
      }
      await write(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    }
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}
