import zlib from 'node:zlib';
import sharp from 'sharp';
import type { Graph } from '../../nodes/graph-format.js';
import { parseGraph } from '../../nodes/graph-format.js';
import { parseJsonLimited } from '../../nodes/json-limits.js';

/** The keyword of the PNG text chunk that carries a run's graph and provenance. */
export const PNG_META_KEY = 'fusegraph';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** zlib's own (native) CRC-32 where this Node has it (20.15+), else the table below. */
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;

function crc32(bytes: Uint8Array): number {
  if (nativeCrc32) return nativeCrc32(bytes) >>> 0;
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** iTXt (UTF-8, uncompressed): keyword \0, compression flag 0, method 0, empty language \0, empty translated keyword \0, text. */
function itxt(keyword: string, text: string): Buffer {
  return chunk('iTXt', Buffer.concat([Buffer.from(`${keyword}\0\0\0\0\0`, 'latin1'), Buffer.from(text, 'utf8')]));
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Whether the bytes start with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= SIGNATURE.length && SIGNATURE.equals(bytes.subarray(0, SIGNATURE.length));
}

/** Encodes interleaved RGB bytes as PNG with `meta` as JSON in a `fusegraph` iTXt chunk before IEND. */
export async function encodePngWithMetadata(rgb: Uint8Array, width: number, height: number, meta: unknown): Promise<Buffer> {
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } }).png().toBuffer();
  const iend = png.length - 12;
  return Buffer.concat([png.subarray(0, iend), itxt(PNG_META_KEY, JSON.stringify(meta)), png.subarray(iend)]);
}

/** A PNG chunk whose CRC does not match its bytes: the file was damaged (or edited by hand) after it was written. */
export class PngCrcError extends Error {
  constructor(readonly chunkType: string, readonly offset: number, stored: number, computed: number) {
    super(
      `the PNG is damaged: its ${chunkType} chunk at byte ${offset} has CRC 0x${stored.toString(16).padStart(8, '0')}, ` +
        `but its bytes give 0x${computed.toString(16).padStart(8, '0')}`,
    );
    this.name = 'PngCrcError';
  }
}

/** Text chunks (tEXt and uncompressed iTXt) by keyword. Every chunk's CRC is checked up to IEND (PngCrcError). */
export function readPngText(png: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  if (!isPng(png)) throw new Error('not a PNG file');
  let off = 8;
  while (off + 12 <= png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    if (off + 12 + len > png.length) throw new Error('truncated PNG chunk');
    const stored = png.readUInt32BE(off + 8 + len);
    const computed = crc32(png.subarray(off + 4, off + 8 + len));
    if (stored !== computed) throw new PngCrcError(type, off, stored, computed);
    if (type === 'tEXt') {
      const z = data.indexOf(0);
      if (z > 0) out.set(data.toString('latin1', 0, z), data.toString('latin1', z + 1));
    } else if (type === 'iTXt') {
      const z = data.indexOf(0);
      // Compressed iTXt is not something FuseGraph writes; skip it rather than guess.
      if (z > 0 && data[z + 1] === 0) {
        let p = z + 3;
        p = data.indexOf(0, p) + 1; // language tag
        p = data.indexOf(0, p) + 1; // translated keyword
        if (p > 0) out.set(data.toString('latin1', 0, z), data.toString('utf8', p));
      }
    } else if (type === 'IEND') break;
    off += 12 + len;
  }
  return out;
}

/**
 * The graph a FuseGraph PNG carries (migrated to the current format version), or null when it has none. Only the format is checked:
 * a graph that no longer validates (a node or model that changed since) is still returned, for callers to report.
 */
export function readGraphFromPng(png: Buffer): Graph | null {
  const meta = readMeta(png);
  if (meta === null) return null;
  try {
    return parseGraph((meta as { graph?: unknown }).graph).graph;
  } catch {
    return null;
  }
}

/**
 * The parsed `fusegraph` chunk, or null when there is none or it is not JSON. A chunk over JSON_LIMITS (nested
 * deeper, or longer) throws the JsonLimitError that names the limit, before any parsing (issue 27).
 */
function readMeta(png: Buffer): object | null {
  const text = readPngText(png).get(PNG_META_KEY);
  if (!text) return null;
  let meta: unknown;
  try {
    meta = parseJsonLimited(text, { what: `the PNG's "${PNG_META_KEY}" chunk` });
  } catch (err) {
    if (err instanceof SyntaxError) return null;
    throw err;
  }
  return typeof meta === 'object' ? meta : null;
}

/** A model the run that wrote a PNG used: its folder relative to the models root and the SHA-256 of each part. */
export interface RecordedModel {
  readonly folder: string;
  readonly sha256: Readonly<Record<string, string>>;
}

/** The models recorded in a FuseGraph PNG (empty when it records none or is not one of ours). */
export function readRecordedModels(png: Buffer): RecordedModel[] {
  const models = (readMeta(png) as { models?: unknown } | null)?.models;
  if (!Array.isArray(models)) return [];
  return models.filter(
    (m): m is RecordedModel =>
      typeof (m as RecordedModel | null)?.folder === 'string' &&
      typeof (m as RecordedModel).sha256 === 'object' &&
      (m as RecordedModel).sha256 !== null &&
      Object.values((m as RecordedModel).sha256).every((h) => typeof h === 'string'),
  );
}
