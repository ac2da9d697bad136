/**
 * safetensors reader: u64-LE header length, a JSON header, then one byte buffer. Tensors are read on demand with
 * positioned reads, so a multi-GB file is never held in memory; every header field is checked against the file
 * before anything is allocated by it.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { CheckpointError, DTYPE_BYTES, type StoredDtype, type StoredTensor, type TensorFile } from '../tensor-file.js';
import { JsonSyntaxError, parseStrictJson, type JsonValue } from './strict-json.js';
import { assertLittleEndianHost, bytesToFloat32, checkedElementCount, isStoredDtype, readAt } from './tensor-bytes.js';

/** The reference implementation's MAX_HEADER_SIZE. */
export const SAFETENSORS_MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensor extends StoredTensor {
  /** Absolute file offset of the tensor's first byte (8 + header length + data_offsets[0]). */
  readonly fileOffset: number;
}

export interface SafetensorsFile extends TensorFile {
  readonly format: 'safetensors';
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
  /** Absolute file offset of the byte buffer (8 + header length): ONNX external data can point at fileOffset. */
  readonly dataStart: number;
}

export interface ParsedSafetensorsHeader {
  readonly tensors: Map<string, SafetensorsTensor>;
  readonly metadata: Map<string, string> | null;
}

/**
 * Checks a decoded header against the reference rules: an object of `{dtype, shape, data_offsets}` entries (plus an
 * optional `__metadata__` of strings), offsets that tile the byte buffer of `dataBytes` from 0 without gaps or
 * overlaps, and every byte length equal to dtype size × product of shape.
 */
export function parseSafetensorsHeader(file: string, headerText: string, dataStart: number, dataBytes: number): ParsedSafetensorsHeader {
  let root: JsonValue;
  try {
    root = parseStrictJson(headerText);
  } catch (e) {
    if (e instanceof JsonSyntaxError) throw new CheckpointError(`${file}: safetensors header is not valid JSON: ${e.message}`, file);
    throw e;
  }
  if (!(root instanceof Map)) throw new CheckpointError(`${file}: safetensors header is not a JSON object`, file);

  let metadata: Map<string, string> | null = null;
  const tensors = new Map<string, SafetensorsTensor>();
  const spans: { name: string; begin: number; end: number }[] = [];

  for (const [name, entry] of root) {
    if (name === '__metadata__') {
      if (!(entry instanceof Map)) throw new CheckpointError(`${file}: safetensors __metadata__ is not an object`, file);
      metadata = new Map();
      for (const [k, v] of entry) {
        if (typeof v !== 'string') throw new CheckpointError(`${file}: safetensors __metadata__ field ${JSON.stringify(k)} is not a string`, file);
        metadata.set(k, v);
      }
      continue;
    }
    const what = `tensor ${JSON.stringify(name)}`;
    if (!(entry instanceof Map)) throw new CheckpointError(`${file}: ${what}: header entry is not an object`, file);
    const dtype = entry.get('dtype');
    if (!isStoredDtype(dtype)) {
      throw new CheckpointError(`${file}: ${what}: unknown or unsupported dtype ${JSON.stringify(dtype ?? null)}`, file);
    }
    const shape = entry.get('shape');
    if (!Array.isArray(shape)) throw new CheckpointError(`${file}: ${what}: shape is missing or not an array`, file);
    const count = checkedElementCount(shape, DTYPE_BYTES[dtype], file, what);
    const offsets = entry.get('data_offsets');
    if (!Array.isArray(offsets) || offsets.length !== 2) throw new CheckpointError(`${file}: ${what}: data_offsets is not a [begin, end] pair`, file);
    const [begin, end] = offsets as [JsonValue, JsonValue];
    if (typeof begin !== 'number' || typeof end !== 'number' || !Number.isSafeInteger(begin) || !Number.isSafeInteger(end) || begin < 0 || end < 0) {
      throw new CheckpointError(`${file}: ${what}: data_offsets [${String(begin)}, ${String(end)}] are not non-negative integers below 2^53`, file);
    }
    if (end < begin) throw new CheckpointError(`${file}: ${what}: data_offsets [${begin}, ${end}] end before they begin`, file);
    if (end > dataBytes) {
      throw new CheckpointError(`${file}: ${what}: data_offsets [${begin}, ${end}] reach beyond the file (data region is ${dataBytes} bytes; truncated?)`, file);
    }
    const byteLength = count * DTYPE_BYTES[dtype];
    if (end - begin !== byteLength) {
      throw new CheckpointError(`${file}: ${what}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} × [${shape.join(', ')}] needs ${byteLength}`, file);
    }
    tensors.set(name, { name, dtype, shape: (shape as number[]).slice(), byteLength, fileOffset: dataStart + begin });
    spans.push({ name, begin, end });
  }

  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  let prev: string | null = null;
  for (const s of spans) {
    if (s.begin < at) throw new CheckpointError(`${file}: tensor ${JSON.stringify(s.name)}: data_offsets [${s.begin}, ${s.end}] overlap tensor ${JSON.stringify(prev)}`, file);
    if (s.begin > at) throw new CheckpointError(`${file}: tensor ${JSON.stringify(s.name)}: data_offsets [${s.begin}, ${s.end}] leave a gap after byte ${at}`, file);
    at = s.end;
    prev = s.name;
  }
  if (at !== dataBytes) {
    throw new CheckpointError(`${file}: safetensors data region is ${dataBytes} bytes but the tensors cover ${at} (trailing bytes or a corrupt header)`, file);
  }
  return { tensors, metadata };
}

class SafetensorsReader implements SafetensorsFile {
  readonly format = 'safetensors' as const;
  private closed = false;

  constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    readonly bytes: number,
    readonly dataStart: number,
    readonly tensors: ReadonlyMap<string, SafetensorsTensor>,
    readonly metadata: ReadonlyMap<string, string> | null,
  ) {}

  private tensor(name: string): SafetensorsTensor {
    if (this.closed) throw new CheckpointError(`${this.path}: read after close`, this.path);
    const t = this.tensors.get(name);
    if (t === undefined) throw new CheckpointError(`${this.path}: no tensor named ${JSON.stringify(name)}`, this.path);
    return t;
  }

  async readBytes(name: string): Promise<Uint8Array> {
    const t = this.tensor(name);
    return readAt(this.fh, this.path, t.fileOffset, t.byteLength, `tensor ${JSON.stringify(name)}`);
  }

  async readFloat32(name: string): Promise<Float32Array> {
    const t = this.tensor(name);
    return bytesToFloat32(t.dtype as StoredDtype, await this.readBytes(name));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

/** Opens a safetensors file on an already open handle, which the reader then owns (closed on failure too). */
export async function openSafetensorsHandle(fh: FileHandle, file: string): Promise<SafetensorsFile> {
  try {
    return await readSafetensors(fh, file);
  } catch (e) {
    await fh.close();
    throw e;
  }
}

async function readSafetensors(fh: FileHandle, file: string): Promise<SafetensorsFile> {
  assertLittleEndianHost(file);
  const size = (await fh.stat()).size;
  if (size < 8) throw new CheckpointError(`${file}: too short for a safetensors file (${size} bytes)`, file);
  const head = await readAt(fh, file, 0, 8, 'safetensors header length');
  const n = Buffer.from(head.buffer, head.byteOffset, 8).readBigUInt64LE(0);
  if (n > BigInt(SAFETENSORS_MAX_HEADER_BYTES)) {
    throw new CheckpointError(`${file}: safetensors header length ${n} is over the ${SAFETENSORS_MAX_HEADER_BYTES}-byte limit`, file);
  }
  const headerLength = Number(n);
  if (8 + headerLength > size) {
    throw new CheckpointError(`${file}: safetensors header length ${headerLength} reaches beyond the file (${size} bytes; truncated?)`, file);
  }
  const raw = await readAt(fh, file, 8, headerLength, 'safetensors header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(raw);
  } catch {
    throw new CheckpointError(`${file}: safetensors header is not valid UTF-8`, file);
  }
  const dataStart = 8 + headerLength;
  const { tensors, metadata } = parseSafetensorsHeader(file, text, dataStart, size - dataStart);
  return new SafetensorsReader(file, fh, size, dataStart, tensors, metadata);
}

/** Opens a safetensors file by path (whatever its first bytes; use openTensorFile to choose by content). */
export async function openSafetensors(file: string): Promise<SafetensorsFile> {
  return openSafetensorsHandle(await open(file, 'r'), file);
}
