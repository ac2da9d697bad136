/**
 * PyTorch zip checkpoints (torch.save since 1.6: .ckpt/.pt/.pth): a ZIP (ZIP64-capable) whose entries all live under
 * one top-level folder, holding `data.pkl` and one raw little-endian storage per `data/<key>`, written uncompressed.
 * The central directory is located from the end of the file, every size it claims is checked against the file
 * before anything is allocated by it, the pickle goes through the restricted VM (unpickle.ts), and tensors are read
 * on demand with positioned reads from their storage records.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import { CheckpointError, DTYPE_BYTES, type StoredTensor, type TensorFile } from '../tensor-file.js';
import { assertLittleEndianHost, bytesToFloat32, checkedElementCount, readAt } from './tensor-bytes.js';
import { TorchTensorRef, unpickleTorch, type PyValue, type TorchStorageRef } from './unpickle.js';

export const ZIP_MAX_ENTRIES = 1_000_000;
export const ZIP_MAX_CENTRAL_DIRECTORY_BYTES = 256 * 1024 * 1024;
export const TORCH_MAX_PICKLE_BYTES = 512 * 1024 * 1024;

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  readonly localHeaderOffset: number;
}

export interface ZipDirectory {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** Where the central directory starts: every entry's data must end before it. */
  readonly centralDirectoryOffset: number;
  readonly zip64: boolean;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function u64(view: DataView, at: number, file: string, what: string): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(`${file}: zip ${what} ${v} is beyond any file size`, file);
  return Number(v);
}

/** Reads and checks the central directory (ZIP or ZIP64) of a file of `size` bytes. */
export async function readZipDirectory(fh: FileHandle, file: string, size: number): Promise<ZipDirectory> {
  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${msg}`, file);
  };
  if (size < 22) fail(`too short for a zip file (${size} bytes; truncated?)`);
  const tailLen = Math.min(size, 0xffff + 22);
  const tailStart = size - tailLen;
  const tail = await readAt(fh, file, tailStart, tailLen, 'zip end of central directory');
  const tv = dv(tail);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + 22 + tv.getUint16(i + 20, true) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('no zip end-of-central-directory record (truncated, or not a zip file)');
  const eocdAbs = tailStart + eocd;
  const disk = tv.getUint16(eocd + 4, true);
  const cdDisk = tv.getUint16(eocd + 6, true);
  let entriesOnDisk = tv.getUint16(eocd + 8, true);
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  let zip64 = false;
  let dirEnd = eocdAbs; // the central directory must end before the records that describe it

  if (eocdAbs >= 20) {
    const loc = await readAt(fh, file, eocdAbs - 20, 20, 'zip64 locator');
    const lv = dv(loc);
    if (lv.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      zip64 = true;
      if (lv.getUint32(16, true) > 1 || lv.getUint32(4, true) !== 0) fail('multi-disk zip archives are not supported');
      const recAt = u64(lv, 8, file, 'zip64 end-of-central-directory offset');
      if (recAt + 56 > eocdAbs - 20) fail(`zip64 end-of-central-directory offset ${recAt} is beyond the file or overlaps its end records (truncated?)`);
      const rec = await readAt(fh, file, recAt, 56, 'zip64 end-of-central-directory record');
      const rv = dv(rec);
      if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) fail(`no zip64 end-of-central-directory record at offset ${recAt}`);
      if (rv.getUint32(16, true) !== 0 || rv.getUint32(20, true) !== 0) fail('multi-disk zip archives are not supported');
      entriesOnDisk = u64(rv, 24, file, 'entry count');
      count = u64(rv, 32, file, 'entry count');
      cdSize = u64(rv, 40, file, 'central directory size');
      cdOffset = u64(rv, 48, file, 'central directory offset');
      dirEnd = recAt;
    }
  }
  if (!zip64 && (disk !== 0 || cdDisk !== 0)) fail('multi-disk zip archives are not supported');
  if (!zip64 && (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff)) fail('zip claims ZIP64 sizes but has no ZIP64 locator (truncated?)');
  if (entriesOnDisk !== count) fail('multi-disk zip archives are not supported');
  if (count > ZIP_MAX_ENTRIES) fail(`zip claims ${count} entries, over the ${ZIP_MAX_ENTRIES} limit`);
  if (cdSize > ZIP_MAX_CENTRAL_DIRECTORY_BYTES) fail(`zip central directory of ${cdSize} bytes is over the ${ZIP_MAX_CENTRAL_DIRECTORY_BYTES}-byte limit`);
  if (cdOffset + cdSize > dirEnd) fail(`zip central directory (${cdSize} bytes at ${cdOffset}) reaches beyond the file (${size} bytes; truncated?)`);
  if (count * 46 > cdSize) fail(`zip claims ${count} entries but its central directory holds only ${cdSize} bytes`);

  const cd = await readAt(fh, file, cdOffset, cdSize, 'zip central directory');
  const cv = dv(cd);
  const names = new TextDecoder('utf-8', { fatal: true });
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + 46 > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) fail(`zip central directory entry ${n} is malformed`);
    const flags = cv.getUint16(p + 8, true);
    const method = cv.getUint16(p + 10, true);
    let compressedSize = cv.getUint32(p + 20, true);
    let uncompressedSize = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    const diskStart = cv.getUint16(p + 34, true);
    let localHeaderOffset = cv.getUint32(p + 42, true);
    const recEnd = p + 46 + nameLen + extraLen + commentLen;
    if (recEnd > cdSize) fail(`zip central directory entry ${n} runs past the directory`);
    let name: string;
    try {
      name = names.decode(cd.subarray(p + 46, p + 46 + nameLen));
    } catch {
      return fail(`zip entry ${n} has a name that is not UTF-8`);
    }
    const quoted = JSON.stringify(name);
    if (flags & 1) fail(`zip entry ${quoted} is encrypted`);
    // ZIP64 extended information: the 8-byte fields present are those whose 4-byte fields are saturated.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cv.getUint16(e, true);
      const len = cv.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) fail(`zip entry ${quoted} has a malformed extra field`);
      if (id === 0x0001) {
        let q = e + 4;
        const next = (what: string): number => {
          if (q + 8 > e + 4 + len) fail(`zip entry ${quoted}: ZIP64 extra field lacks the ${what}`);
          const v = u64(cv, q, file, `entry ${quoted} ${what}`);
          q += 8;
          return v;
        };
        if (uncompressedSize === 0xffffffff) uncompressedSize = next('uncompressed size');
        if (compressedSize === 0xffffffff) compressedSize = next('compressed size');
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next('local header offset');
      }
      e += 4 + len;
    }
    if (diskStart !== 0 && diskStart !== 0xffff) fail(`zip entry ${quoted} is on another disk`);
    if (entries.has(name)) fail(`zip has two entries named ${quoted}`);
    if (compressedSize > size || localHeaderOffset + 30 + compressedSize > cdOffset) {
      fail(`zip entry ${quoted} claims ${compressedSize} bytes at offset ${localHeaderOffset}, beyond the file's data (${size} bytes; truncated?)`);
    }
    if (method === 0 && compressedSize !== uncompressedSize) fail(`zip entry ${quoted} is stored but its sizes differ (${compressedSize} vs ${uncompressedSize})`);
    entries.set(name, { name, method, compressedSize, uncompressedSize, localHeaderOffset });
    p = recEnd;
  }
  return { entries, centralDirectoryOffset: cdOffset, zip64 };
}

/** Absolute offset of an entry's data, from its local header (whose name must match the central directory's). */
export async function zipEntryDataOffset(fh: FileHandle, file: string, entry: ZipEntry, dir: ZipDirectory): Promise<number> {
  const quoted = JSON.stringify(entry.name);
  const nameBytes = Buffer.from(entry.name, 'utf8');
  const h = await readAt(fh, file, entry.localHeaderOffset, 30 + nameBytes.length, `zip local header of ${quoted}`);
  const hv = dv(h);
  if (hv.getUint32(0, true) !== SIG_LOCAL) throw new CheckpointError(`${file}: zip entry ${quoted}: no local header at offset ${entry.localHeaderOffset}`, file);
  const nameLen = hv.getUint16(26, true);
  const extraLen = hv.getUint16(28, true);
  if (nameLen !== nameBytes.length || !Buffer.from(h.buffer, h.byteOffset + 30, nameLen).equals(nameBytes)) {
    throw new CheckpointError(`${file}: zip entry ${quoted}: its local header names a different entry`, file);
  }
  const start = entry.localHeaderOffset + 30 + nameLen + extraLen;
  if (start + entry.compressedSize > dir.centralDirectoryOffset) {
    throw new CheckpointError(`${file}: zip entry ${quoted}: ${entry.compressedSize} bytes at offset ${start} reach beyond the file's data (truncated?)`, file);
  }
  return start;
}

export interface TorchTensor extends StoredTensor {
  /** The `data/<key>` record holding the storage, with the archive's top folder. */
  readonly entry: string;
  readonly storageKey: string;
  /** In elements, into the storage. */
  readonly storageOffset: number;
  readonly stride: readonly number[];
  readonly contiguous: boolean;
  /** Absolute file offset of element 0 (the first byte when contiguous). */
  readonly fileOffset: number;
}

export interface TorchFile extends TensorFile {
  readonly format: 'torch';
  readonly tensors: ReadonlyMap<string, TorchTensor>;
  /** The archive's top-level folder (`archive` for Lightning checkpoints). */
  readonly archiveName: string;
  /** Where the tensors were found: `state_dict`, `model`, `module`, `string_to_param` (an A1111 textual-inversion .pt), or `` for the top dict. */
  readonly stateDictKey: string;
  /** Globals the pickle named only as data (e.g. Lightning's ModelCheckpoint class as a dict key). */
  readonly placeholderGlobals: ReadonlySet<string>;
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 0) return true;
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

class TorchZipReader implements TorchFile {
  readonly format = 'torch' as const;
  readonly metadata = null;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly bytes: number,
    readonly archiveName: string,
    readonly stateDictKey: string,
    readonly tensors: ReadonlyMap<string, TorchTensor>,
    readonly placeholderGlobals: ReadonlySet<string>,
  ) {}

  private tensor(name: string): TorchTensor {
    if (this.closed) throw new CheckpointError(`${this.path}: read after close`, this.path);
    const t = this.tensors.get(name);
    if (t === undefined) throw new CheckpointError(`${this.path}: no tensor named ${JSON.stringify(name)}`, this.path);
    return t;
  }

  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.tensor(name);
    const what = `tensor ${JSON.stringify(name)}`;
    if (t.contiguous) return readAt(this.fh, this.path, t.fileOffset, t.byteLength, what);
    // Strided: read the span the view covers (already checked to lie inside its storage) and gather in C order.
    const size = DTYPE_BYTES[t.dtype];
    const n = t.byteLength / size;
    let extent = 1;
    for (let i = 0; i < t.shape.length; i++) extent += (t.shape[i]! - 1) * t.stride[i]!;
    const span = await readAt(this.fh, this.path, t.fileOffset, extent * size, what);
    const out = new Uint8Array(t.byteLength);
    const rank = t.shape.length;
    const idx = new Array<number>(rank).fill(0);
    let src = 0;
    for (let k = 0; k < n; k++) {
      out.set(span.subarray(src * size, src * size + size), k * size);
      for (let d = rank - 1; d >= 0; d--) {
        idx[d]!++;
        src += t.stride[d]!;
        if (idx[d]! < t.shape[d]!) break;
        src -= idx[d]! * t.stride[d]!;
        idx[d] = 0;
      }
    }
    return out;
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.tensor(name);
    return bytesToFloat32(t.dtype, await this.readBytes(name));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Picks the state dict from the unpickled root, as described on TorchFile.stateDictKey. */
function findStateDict(root: PyValue, file: string): { key: string; dict: Map<PyValue, PyValue> } {
  if (!(root instanceof Map)) throw new CheckpointError(`${file}: the checkpoint's top object is not a dict`, file);
  const hasTensors = (d: Map<PyValue, PyValue>): boolean => {
    for (const v of d.values()) if (v instanceof TorchTensorRef) return true;
    return false;
  };
  const sd = root.get('state_dict');
  if (sd instanceof Map) return { key: 'state_dict', dict: sd };
  if (hasTensors(root)) return { key: '', dict: root };
  for (const key of ['model', 'module', 'string_to_param']) {
    const d = root.get(key);
    if (d instanceof Map && hasTensors(d)) return { key, dict: d };
  }
  const keys = [...root.keys()].filter((k): k is string => typeof k === 'string').slice(0, 10);
  throw new CheckpointError(`${file}: no tensors found (no state_dict; top-level keys: ${keys.map((k) => JSON.stringify(k)).join(', ') || 'none'})`, file);
}

async function readTorchZip(fh: FileHandle, file: string): Promise<TorchFile> {
  assertLittleEndianHost(file);
  const size = (await fh.stat()).size;
  const dir = await readZipDirectory(fh, file, size);

  // One top-level folder holding data.pkl; every entry under it.
  const pkls = [...dir.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length === 0) throw new CheckpointError(`${file}: zip has no <folder>/data.pkl entry: not a PyTorch checkpoint`, file);
  if (pkls.length > 1) throw new CheckpointError(`${file}: zip has several data.pkl entries (${pkls.slice(0, 3).join(', ')})`, file);
  const top = pkls[0]!.slice(0, -'/data.pkl'.length);
  for (const name of dir.entries.keys()) {
    const quoted = JSON.stringify(name);
    if (!name.startsWith(`${top}/`)) throw new CheckpointError(`${file}: zip entry ${quoted} is outside the archive folder ${JSON.stringify(top)}`, file);
    const parts = name.split('/');
    if (name.includes('\\') || name.includes('\0') || parts.some((s) => s === '..' || s === '.')) {
      throw new CheckpointError(`${file}: zip entry ${quoted} has a path that is not allowed ('..', '.', backslash or NUL)`, file);
    }
  }

  const byteorder = dir.entries.get(`${top}/byteorder`);
  if (byteorder !== undefined && byteorder.method === 0 && byteorder.uncompressedSize <= 16) {
    const at = await zipEntryDataOffset(fh, file, byteorder, dir);
    const bo = Buffer.from(await readAt(fh, file, at, byteorder.uncompressedSize, 'byteorder')).toString('latin1').trim();
    if (bo !== 'little') throw new CheckpointError(`${file}: checkpoint byte order is ${JSON.stringify(bo)}; only little-endian checkpoints are supported`, file);
  }

  const pklEntry = dir.entries.get(pkls[0]!)!;
  if (pklEntry.uncompressedSize > TORCH_MAX_PICKLE_BYTES) {
    throw new CheckpointError(`${file}: ${pklEntry.name} is ${pklEntry.uncompressedSize} bytes, over the ${TORCH_MAX_PICKLE_BYTES}-byte limit`, file);
  }
  const pklAt = await zipEntryDataOffset(fh, file, pklEntry, dir);
  let pickle = await readAt(fh, file, pklAt, pklEntry.compressedSize, pklEntry.name);
  if (pklEntry.method === 8) {
    // Deflate cannot expand more than ~1032:1, so a larger declared size is a lie told before any inflating.
    if (pklEntry.uncompressedSize > pklEntry.compressedSize * 1032 + 1024) {
      throw new CheckpointError(`${file}: ${pklEntry.name} declares ${pklEntry.uncompressedSize} bytes from ${pklEntry.compressedSize} compressed, more than deflate can produce`, file);
    }
    try {
      pickle = new Uint8Array(inflateRawSync(pickle, { maxOutputLength: Math.max(1, pklEntry.uncompressedSize) }));
    } catch (e) {
      throw new CheckpointError(`${file}: ${pklEntry.name} does not inflate to its declared ${pklEntry.uncompressedSize} bytes (${(e as Error).message})`, file);
    }
    if (pickle.byteLength !== pklEntry.uncompressedSize) {
      throw new CheckpointError(`${file}: ${pklEntry.name} inflates to ${pickle.byteLength} bytes, not its declared ${pklEntry.uncompressedSize}`, file);
    }
  } else if (pklEntry.method !== 0) {
    throw new CheckpointError(`${file}: ${pklEntry.name} uses zip compression method ${pklEntry.method}; only stored and deflate are supported`, file);
  }

  const { root, storages, placeholders } = unpickleTorch(pickle, file, pklEntry.name);
  const { key: stateDictKey, dict } = findStateDict(root, file);

  // Each storage's record: stored, exactly numel × element size, its data start from the local header.
  const storageAt = new Map<string, number>();
  const storageList = [...storages.values()];
  const locate = async (s: TorchStorageRef): Promise<void> => {
    const name = `${top}/data/${s.key}`;
    const quoted = JSON.stringify(name);
    const e = dir.entries.get(name);
    if (e === undefined) throw new CheckpointError(`${file}: storage ${s.key} has no zip entry ${quoted}`, file);
    if (e.method !== 0) throw new CheckpointError(`${file}: zip entry ${quoted} is compressed (method ${e.method}); tensor storages must be stored uncompressed`, file);
    const want = s.numel * DTYPE_BYTES[s.dtype];
    if (e.uncompressedSize !== want) {
      throw new CheckpointError(`${file}: zip entry ${quoted} holds ${e.uncompressedSize} bytes but storage ${s.key} declares ${s.numel} × ${s.dtype} = ${want}`, file);
    }
    storageAt.set(s.key, await zipEntryDataOffset(fh, file, e, dir));
  };
  for (let i = 0; i < storageList.length; i += 64) await Promise.all(storageList.slice(i, i + 64).map(locate));

  const tensors = new Map<string, TorchTensor>();
  for (const [k, v] of dict) {
    if (typeof k !== 'string' || !(v instanceof TorchTensorRef)) continue;
    const what = `tensor ${JSON.stringify(k)}`;
    const size = DTYPE_BYTES[v.storage.dtype];
    const count = checkedElementCount(v.shape, size, file, what);
    if (count > 0) {
      let last = v.storageOffset;
      for (let i = 0; i < v.shape.length; i++) last += (v.shape[i]! - 1) * v.stride[i]!;
      if (!Number.isSafeInteger(last) || last >= v.storage.numel) {
        throw new CheckpointError(`${file}: ${what}: offset ${v.storageOffset}, size [${v.shape.join(', ')}], stride [${v.stride.join(', ')}] reach past storage ${v.storage.key} (${v.storage.numel} elements)`, file);
      }
    } else if (v.storageOffset > v.storage.numel) {
      throw new CheckpointError(`${file}: ${what}: offset ${v.storageOffset} is past storage ${v.storage.key} (${v.storage.numel} elements)`, file);
    }
    tensors.set(k, {
      name: k,
      dtype: v.storage.dtype,
      shape: v.shape,
      byteLength: count * size,
      entry: `${top}/data/${v.storage.key}`,
      storageKey: v.storage.key,
      storageOffset: v.storageOffset,
      stride: v.stride,
      contiguous: isContiguous(v.shape, v.stride),
      fileOffset: storageAt.get(v.storage.key)! + v.storageOffset * size,
    });
  }
  return new TorchZipReader(file, fh, size, top, stateDictKey, tensors, placeholders);
}

/** Opens a PyTorch zip checkpoint on an already open handle, which the reader then owns (closed on failure too). */
export async function openTorchZipHandle(fh: FileHandle, file: string): Promise<TorchFile> {
  try {
    return await readTorchZip(fh, file);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

/** Opens a PyTorch zip checkpoint by path (use openTensorFile to choose the format by content). */
export async function openTorchZip(file: string): Promise<TorchFile> {
  return openTorchZipHandle(await open(file, 'r'), file);
}

