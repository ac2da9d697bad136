/**
 * NumPy .npy files for latents: writes exactly what `numpy.save` writes for a float32 C-order array, so saved
 * latents can be diffed byte for byte against Python, and reads the float32/float64 files Python tools produce.
 */
import { shapeSize } from './rng.js';

export class NpyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NpyError';
  }
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ARRAY_ALIGN = 64;
// numpy.lib.format pads the header so the leading axis can later grow to this many digits in place.
const GROWTH_AXIS_MAX_DIGITS = 21;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function pyTupleRepr(shape: readonly number[]): string {
  if (shape.length === 1) return `(${shape[0]},)`;
  return `(${shape.join(', ')})`;
}

export function encodeNpy(data: Float32Array, shape: readonly number[]): Buffer {
  let n: number;
  try {
    n = shapeSize(shape);
  } catch (e) {
    throw new NpyError((e as Error).message);
  }
  if (n !== data.length) {
    throw new NpyError(`shape [${shape.join(', ')}] holds ${n} elements but the data has ${data.length}`);
  }
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${pyTupleRepr(shape)}, }`;
  if (shape.length > 0) header += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(shape[0]).length));

  // Version 1.0 has a 2-byte header length; numpy.save switches to 2.0 (4 bytes) only when that overflows.
  let prefixLen = MAGIC.length + 2 + 2;
  let hlen = header.length + 1;
  let padded = hlen + (ARRAY_ALIGN - ((prefixLen + hlen) % ARRAY_ALIGN));
  let major = 1;
  if (padded > 0xffff) {
    major = 2;
    prefixLen = MAGIC.length + 2 + 4;
    padded = hlen + (ARRAY_ALIGN - ((prefixLen + hlen) % ARRAY_ALIGN));
  }
  hlen = padded;

  const buf = Buffer.alloc(prefixLen + hlen + n * 4);
  buf.set(MAGIC, 0);
  buf[6] = major;
  buf[7] = 0;
  if (major === 1) buf.writeUInt16LE(hlen, 8);
  else buf.writeUInt32LE(hlen, 8);
  buf.write(header, prefixLen, 'latin1');
  buf.fill(0x20, prefixLen + header.length, prefixLen + hlen - 1);
  buf[prefixLen + hlen - 1] = 0x0a;

  const off = prefixLen + hlen;
  if (LITTLE_ENDIAN_HOST) {
    buf.set(new Uint8Array(data.buffer, data.byteOffset, n * 4), off);
  } else {
    for (let i = 0; i < n; i++) buf.writeFloatLE(data[i]!, off + i * 4);
  }
  return buf;
}

type PyValue = string | number | boolean | null | PyValue[] | { [k: string]: PyValue };

/** Parser for the Python literal subset numpy writes in .npy headers (dict, tuple, list, str, int, bools, None). */
class PyLiteralParser {
  private i = 0;
  constructor(private readonly s: string, private readonly fail: (msg: string) => never) {}

  parseTop(): PyValue {
    const v = this.value();
    this.ws();
    if (this.i !== this.s.length) this.fail(`unexpected text after the header dict at ${this.i}`);
    return v;
  }

  private ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
  }

  private value(): PyValue {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.dict();
    if (c === '(' || c === '[') return this.seq(c === '(' ? ')' : ']');
    if (c === "'" || c === '"') return this.str();
    const m = /^(?:-?\d+|True|False|None)/.exec(this.s.slice(this.i));
    if (!m) this.fail(`unexpected character ${JSON.stringify(c ?? 'end of header')} at ${this.i}`);
    this.i += m[0].length;
    if (m[0] === 'True') return true;
    if (m[0] === 'False') return false;
    if (m[0] === 'None') return null;
    return Number(m[0]);
  }

  private str(): string {
    const q = this.s[this.i++];
    let out = '';
    while (this.i < this.s.length && this.s[this.i] !== q) {
      if (this.s[this.i] === '\\') this.i++;
      out += this.s[this.i++];
    }
    if (this.i >= this.s.length) this.fail('unterminated string');
    this.i++;
    return out;
  }

  private seq(close: string): PyValue[] {
    this.i++;
    const out: PyValue[] = [];
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        return out;
      }
      out.push(this.value());
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== close) this.fail(`expected ',' or '${close}' at ${this.i}`);
    }
  }

  private dict(): { [k: string]: PyValue } {
    this.i++;
    const out: { [k: string]: PyValue } = {};
    for (;;) {
      this.ws();
      if (this.s[this.i] === '}') {
        this.i++;
        return out;
      }
      const k = this.value();
      if (typeof k !== 'string') this.fail('header dict keys must be strings');
      this.ws();
      if (this.s[this.i] !== ':') this.fail(`expected ':' at ${this.i}`);
      this.i++;
      out[k] = this.value();
      this.ws();
      if (this.s[this.i] === ',') this.i++;
      else if (this.s[this.i] !== '}') this.fail(`expected ',' or '}' at ${this.i}`);
    }
  }
}

export function decodeNpy(buf: Buffer | Uint8Array, source = '<buffer>'): { data: Float32Array; shape: number[] } {
  const fail = (msg: string): never => {
    throw new NpyError(`${source}: not a readable .npy latent: ${msg}`);
  };
  const bytes: Uint8Array = buf;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) fail('bad magic (expected \\x93NUMPY)');
  const major = bytes[6]!;
  const minor = bytes[7]!;
  if (![1, 2, 3].includes(major) || minor !== 0) fail(`unsupported format version ${major}.${minor}`);
  const lenSize = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lenSize) fail('truncated header');
  const hlen = lenSize === 2 ? view.getUint16(8, true) : view.getUint32(8, true);
  const dataStart = 8 + lenSize + hlen;
  if (bytes.length < dataStart) fail(`truncated header (needs ${dataStart} bytes, file has ${bytes.length})`);
  const headerBytes = bytes.subarray(8 + lenSize, dataStart);
  const headerText = Buffer.from(headerBytes).toString(major === 3 ? 'utf8' : 'latin1');

  const header = new PyLiteralParser(headerText, (m) => fail(`malformed header: ${m}`)).parseTop();
  if (header === null || typeof header !== 'object' || Array.isArray(header)) fail('header is not a dict');
  const h = header as { [k: string]: PyValue };
  const { descr, fortran_order: fortran, shape: rawShape } = h;
  if (typeof descr !== 'string') fail(`unsupported dtype ${JSON.stringify(descr)} (structured arrays are not latents)`);
  if (fortran !== false) fail(fortran === true ? 'fortran_order arrays are not supported (save in C order)' : 'missing fortran_order');
  if (!Array.isArray(rawShape) || !rawShape.every((d) => typeof d === 'number' && Number.isInteger(d) && d >= 0)) {
    fail(`bad shape ${JSON.stringify(rawShape)}`);
  }
  const shape = rawShape as number[];

  let itemSize: number;
  if (descr === '<f4') itemSize = 4;
  else if (descr === '<f8') itemSize = 8;
  else if (descr === '>f4' || descr === '>f8') return fail(`big-endian dtype ${descr} is not supported`);
  else return fail(`unsupported dtype ${descr} (expected float32 '<f4' or float64 '<f8')`);

  const n = shape.reduce((a, b) => a * b, 1);
  const need = n * itemSize;
  if (bytes.length - dataStart < need) {
    fail(`truncated data: shape (${shape.join(', ')}) ${descr} needs ${need} bytes, file has ${bytes.length - dataStart}`);
  }

  const data = new Float32Array(n);
  if (itemSize === 4 && LITTLE_ENDIAN_HOST) {
    // Copy bytes rather than viewing them: the payload offset inside a pooled Buffer need not be 4-aligned.
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart, dataStart + need));
  } else if (itemSize === 4) {
    for (let i = 0; i < n; i++) data[i] = view.getFloat32(dataStart + i * 4, true);
  } else {
    for (let i = 0; i < n; i++) data[i] = view.getFloat64(dataStart + i * 8, true);
  }
  return { data, shape };
}
