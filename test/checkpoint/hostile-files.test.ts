/**
 * Files from strangers: every refusal of the safetensors and PyTorch zip readers, asserted by its message, with the
 * process's memory measured around each, and pickles that would run code if a Python unpickler loaded them.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { deflateRawSync } from 'node:zlib';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { CheckpointError, type TensorFile } from '../../server/checkpoint/tensor-file.js';
import { P, cat, dictPickle, f32bytes, persid, tensorPickle, torchEntries, writeLayout, writeZip, zipLayout, type ZipEntrySpec, type ZipSpec } from '../helpers/hand-made-checkpoints.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'checkpoints', 'formats');
const MB = 1024 * 1024;

describe('hostile checkpoint files', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-hostile-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const fresh = (ext: string): string => path.join(dir, `f${n++}.${ext}`);

  /** Opening `file` fails with a CheckpointError naming the file and matching `re`, and RSS grows < 200 MB. */
  async function refuses(file: string, re: RegExp): Promise<void> {
    const before = process.memoryUsage().rss;
    let tf: TensorFile | undefined;
    try {
      tf = await openTensorFile(file);
    } catch (e) {
      assert.ok(e instanceof CheckpointError, `expected a CheckpointError, got ${String(e)}`);
      assert.equal(e.file, file);
      assert.ok(e.message.startsWith(file), e.message);
      assert.match(e.message, re);
      const grew = process.memoryUsage().rss - before;
      assert.ok(grew < 200 * MB, `RSS grew ${Math.round(grew / MB)} MB`);
      return;
    }
    await tf.close();
    assert.fail(`${file} opened, expected a refusal matching ${re}`);
  }

  // --- safetensors -------------------------------------------------------------------------------------------

  async function safetensors(header: string | object, data: Uint8Array = new Uint8Array(0), claimLength?: bigint): Promise<string> {
    const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(claimLength ?? BigInt(json.length));
    const file = fresh('safetensors');
    await writeFile(file, Buffer.concat([len, json, data]));
    return file;
  }
  const t = (dtype: string, shape: unknown[], offsets: unknown[]): object => ({ dtype, shape, data_offsets: offsets });

  describe('safetensors', () => {
    it('refuses a header claiming 50 GB', async () => {
      await refuses(await safetensors('{}', undefined, 50n * 1000n ** 3n), /header length 50000000000 is over the 100000000-byte limit/);
    });
    it('refuses a header of 2^64-1 bytes', async () => {
      await refuses(await safetensors('{}', undefined, 2n ** 64n - 1n), /over the 100000000-byte limit/);
    });
    it('refuses a header longer than the file', async () => {
      await refuses(await safetensors('{}', undefined, 1000n), /header length 1000 reaches beyond the file/);
    });
    it('refuses a header that is not JSON, not UTF-8, or not an object', async () => {
      await refuses(await safetensors('{"a": '), /not valid JSON/);
      await refuses(await safetensors('{"a": 1} x'), /not valid JSON: trailing characters/);
      const bad = Buffer.from('{"\xff": 1}', 'latin1');
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(bad.length));
      const file = fresh('safetensors');
      await writeFile(file, Buffer.concat([len, bad]));
      await refuses(file, /not valid UTF-8/);
      await refuses(await safetensors('{"x": [1, 2]}'), /tensor "x": header entry is not an object/);
      await refuses(await safetensors('[{"x": 1}]'), /safetensors header is not a JSON object/);
    });
    it('refuses nesting deep enough to overflow a recursive parser', async () => {
      await refuses(await safetensors(`{"__metadata__": ${'['.repeat(200_000)}${']'.repeat(200_000)}}`), /nesting deeper than 64/);
    });
    it('refuses an unknown dtype', async () => {
      await refuses(await safetensors({ w: t('F8_E4M3', [1], [0, 1]) }, new Uint8Array(1)), /tensor "w": unknown or unsupported dtype "F8_E4M3"/);
      await refuses(await safetensors({ w: t('float', [1], [0, 4]) }, new Uint8Array(4)), /tensor "w": unknown or unsupported dtype "float"/);
      await refuses(await safetensors({ w: { shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /tensor "w": unknown or unsupported dtype null/);
    });
    it('refuses bad shapes', async () => {
      await refuses(await safetensors({ w: t('F32', [-1], [0, 4]) }, new Uint8Array(4)), /tensor "w": bad shape \[-1\]/);
      await refuses(await safetensors({ w: t('F32', [1.5], [0, 4]) }, new Uint8Array(4)), /tensor "w": bad shape \[1.5\]/);
      await refuses(await safetensors({ w: t('F32', ['2'], [0, 8]) }, new Uint8Array(8)), /tensor "w": bad shape/);
      await refuses(await safetensors({ w: { dtype: 'F32', data_offsets: [0, 4] } }, new Uint8Array(4)), /tensor "w": shape is missing/);
      await refuses(await safetensors({ w: t('F32', [2 ** 30, 2 ** 30, 2 ** 30], [0, 4]) }, new Uint8Array(4)), /tensor "w": shape .* is too large \(byte size overflows 2\^53\)/);
    });
    it('refuses bad data_offsets', async () => {
      const d8 = new Uint8Array(8);
      await refuses(await safetensors({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [2, 6]) }, d8), /tensor "b": data_offsets \[2, 6\] overlap tensor "a"/);
      await refuses(await safetensors({ a: t('F32', [1], [0, 4]), b: t('U8', [1], [5, 6]) }, d8.subarray(0, 6)), /tensor "b": data_offsets \[5, 6\] leave a gap after byte 4/);
      await refuses(await safetensors({ a: t('F32', [1], [8, 4]) }, d8), /tensor "a": data_offsets \[8, 4\] end before they begin/);
      await refuses(await safetensors({ a: t('F32', [2], [0, 8]) }, d8.subarray(0, 4)), /tensor "a": data_offsets \[0, 8\] reach beyond the file .*truncated/);
      await refuses(await safetensors({ a: t('F32', [1], [0, 8]) }, d8), /tensor "a": data_offsets \[0, 8\] hold 8 bytes but F32 × \[1\] needs 4/);
      await refuses(await safetensors({ a: t('F32', [1], [0.5, 4]) }, d8), /tensor "a": data_offsets \[0.5, 4\] are not non-negative integers/);
      await refuses(await safetensors('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [9007199254740993, 9007199254740994]}}', d8), /tensor "a": data_offsets .* below 2\^53/);
      await refuses(await safetensors({ a: t('F32', [1], [0]) }, d8), /tensor "a": data_offsets is not a \[begin, end\] pair/);
      await refuses(await safetensors({ a: t('F32', [1], [0, 4]) }, d8), /data region is 8 bytes but the tensors cover 4 \(trailing bytes/);
    });
    it('refuses duplicate names (JSON.parse would keep the last silently)', async () => {
      const h = '{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}';
      await refuses(await safetensors(h, new Uint8Array(2)), /duplicate key "w"/);
    });
    it('refuses non-string metadata', async () => {
      await refuses(await safetensors({ __metadata__: { a: 1 } }), /__metadata__ field "a" is not a string/);
      await refuses(await safetensors({ __metadata__: ['x'] }), /__metadata__ is not an object/);
    });
    it('names like __proto__ and constructor are only names', async () => {
      const file = await safetensors(
        '{"__proto__": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "constructor": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}, "__metadata__": {"__proto__": "x", "polluted": "y"}}',
        new Uint8Array([5, 6]),
      );
      const tf = await openTensorFile(file);
      try {
        assert.deepEqual([...tf.tensors.keys()].sort(), ['__proto__', 'constructor']);
        assert.deepEqual([...(await tf.readFloat32('__proto__'))], [5]);
        assert.equal(tf.metadata!.get('__proto__'), 'x');
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        assert.equal(({} as Record<string, unknown>).dtype, undefined);
        assert.equal(Object.getPrototypeOf({}), Object.prototype);
      } finally {
        await tf.close();
      }
    });
  });

  // --- what the bytes are -------------------------------------------------------------------------------------

  describe('format sniffing', () => {
    it('refuses legacy torch pickles, tar checkpoints, bare pickles and junk with what to do', async () => {
      const legacy = fresh('pt');
      await writeFile(legacy, Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]));
      await refuses(legacy, /legacy \(pre-1\.6\) PyTorch checkpoint.*re-save this file with torch ≥ 1\.6/);
      const tar = Buffer.alloc(1024);
      tar.write('pickle', 0);
      tar.write('ustar', 257);
      const tarFile = fresh('ckpt');
      await writeFile(tarFile, tar);
      await refuses(tarFile, /tar-format .*re-save this file with torch ≥ 1\.6/);
      const bare = fresh('pkl');
      await writeFile(bare, Buffer.from(dictPickle([])));
      await refuses(bare, /bare pickle/);
      const junk = fresh('bin');
      await writeFile(junk, Buffer.from('hello world, not a model'));
      await refuses(junk, /not a safetensors or PyTorch zip checkpoint/);
      const empty = fresh('bin');
      await writeFile(empty, '');
      await refuses(empty, /not a safetensors or PyTorch zip checkpoint \(0 bytes read/);
    });
  });

  // --- zip container ------------------------------------------------------------------------------------------

  const okPickle = (): Uint8Array => dictPickle([['w', tensorPickle('0', 2, [2], [1])]]);
  const okEntries = (): ZipEntrySpec[] => torchEntries(okPickle(), { '0': f32bytes([1, 2]) });
  async function zip(entries: ZipEntrySpec[], spec?: ZipSpec, cutTo?: number): Promise<string> {
    const file = fresh('ckpt');
    await writeZip(file, entries, spec, cutTo);
    return file;
  }

  describe('zip container', () => {
    it('opens the well-formed base case these are made from', async () => {
      for (const spec of [{}, { zip64: true }]) {
        const tf = await openTensorFile(await zip(okEntries(), spec));
        assert.deepEqual([...(await tf.readFloat32('w'))], [1, 2]);
        await tf.close();
      }
    });
    it('refuses a truncated file', async () => {
      const layout = zipLayout(okEntries());
      for (const cut of [layout.size - 1, Math.floor(layout.size / 2), 10]) {
        const file = fresh('ckpt');
        await writeLayout(file, layout, cut);
        await refuses(file, cut < 22 ? /too short for a zip file/ : /no zip end-of-central-directory record \(truncated/);
      }
    });
    it('refuses an entry claiming 100 GB', async () => {
      const e = okEntries();
      e[1] = { ...e[1]!, claimSize: 100e9 };
      await refuses(await zip(e, { zip64: true }), /zip entry "archive\/data\/0" claims 100000000000 bytes .* beyond the file's data/);
    });
    it('refuses absurd ZIP64 counts, directory sizes and offsets', async () => {
      await refuses(await zip(okEntries(), { zip64: true, claimCount: 2 ** 40 }), /claims 1099511627776 entries, over the 1000000 limit/);
      await refuses(await zip(okEntries(), { zip64: true, claimCdSize: 2 ** 45 }), /central directory of 35184372088832 bytes is over the 268435456-byte limit/);
      await refuses(await zip(okEntries(), { zip64: true, claimCdOffset: 2 ** 50 }), /central directory .* reaches beyond the file/);
      await refuses(await zip(okEntries(), { zip64: true, claimCdOffset: 2 ** 63 }), /central directory offset 9223372036854775808 is beyond any file size/);
      await refuses(await zip(okEntries(), { zip64: true, claimZip64RecordOffset: 2 ** 40 }), /zip64 end-of-central-directory offset 1099511627776 is beyond the file/);
      await refuses(await zip(okEntries(), { zip64: true, claimCount: 50 }), /claims 50 entries but its central directory holds only/);
    });
    it('refuses too many entries in a plain zip directory that cannot hold them', async () => {
      await refuses(await zip(okEntries(), { claimCount: 60000 }), /claims 60000 entries but its central directory holds only/);
    });
    it('refuses entries outside the top folder, .. names and duplicate names', async () => {
      await refuses(await zip([...okEntries(), { name: 'other/x', data: new Uint8Array(1) }]), /zip entry "other\/x" is outside the archive folder "archive"/);
      await refuses(await zip([...okEntries(), { name: 'archive/../../etc/passwd', data: new Uint8Array(1) }]), /zip entry "archive\/..\/..\/etc\/passwd" has a path that is not allowed/);
      await refuses(await zip([...okEntries(), { name: 'archive/data/0', data: new Uint8Array(8) }]), /two entries named "archive\/data\/0"/);
      await refuses(await zip(okEntries().slice(1)), /no <folder>\/data\.pkl entry/);
      await refuses(await zip([...okEntries(), { name: 'b/data.pkl', data: okPickle() }]), /several data\.pkl entries/);
    });
    it('refuses a compressed tensor storage, naming the entry', async () => {
      const e = okEntries();
      e[1] = { ...e[1]!, data: deflateRawSync(f32bytes([1, 2])), method: 8, uncompressedSize: 8 };
      await refuses(await zip(e), /zip entry "archive\/data\/0" is compressed \(method 8\); tensor storages must be stored uncompressed/);
    });
    it('refuses a data.pkl that inflates past its declared size (zip bomb)', async () => {
      const bomb = deflateRawSync(new Uint8Array(50 * MB));
      const e = okEntries();
      e[0] = { ...e[0]!, data: bomb, method: 8, uncompressedSize: 100 };
      await refuses(await zip(e), /archive\/data\.pkl does not inflate to its declared 100 bytes/);
      const f = okEntries();
      f[0] = { ...f[0]!, data: deflateRawSync(okPickle()), method: 8, uncompressedSize: 400 * MB };
      await refuses(await zip(f), /archive\/data\.pkl declares 419430400 bytes from \d+ compressed, more than deflate can produce/);
    });
    it('refuses a local header that names another entry, or is not there', async () => {
      const e = okEntries();
      e[1] = { ...e[1]!, localName: 'archive/data/9' };
      await refuses(await zip(e), /zip entry "archive\/data\/0": its local header names a different entry/);
      const f = okEntries();
      f[1] = { ...f[1]!, claimOffset: 3 };
      await refuses(await zip(f), /zip entry "archive\/data\/0": no local header at offset 3/);
    });
    it('refuses storages whose size does not match, and tensors reaching past their storage', async () => {
      await refuses(await zip(torchEntries(okPickle(), { '0': f32bytes([1, 2, 3]) })), /zip entry "archive\/data\/0" holds 12 bytes but storage 0 declares 2 × F32 = 8/);
      await refuses(await zip(torchEntries(okPickle(), {})), /storage 0 has no zip entry "archive\/data\/0"/);
      const past = dictPickle([['w', tensorPickle('0', 2, [2], [1], 1)]]);
      await refuses(await zip(torchEntries(past, { '0': f32bytes([1, 2]) })), /tensor "w": offset 1, size \[2\], stride \[1\] reach past storage 0 \(2 elements\)/);
      const strided = dictPickle([['w', tensorPickle('0', 2, [2, 2], [1, 2])]]);
      await refuses(await zip(torchEntries(strided, { '0': f32bytes([1, 2]) })), /tensor "w": .* reach past storage 0/);
    });
    it('refuses a big-endian checkpoint', async () => {
      await refuses(await zip([...okEntries(), { name: 'archive/byteorder', data: new TextEncoder().encode('big') }]), /byte order is "big"/);
    });
  });

  // --- pickles ------------------------------------------------------------------------------------------------

  describe('restricted unpickler', () => {
    const marker = (): string => path.join(dir, `pwned-${n++}`);
    /** A checkpoint whose pickle, in a Python unpickler, would run `fn(arg)` to create `mark`. */
    async function evil(evilValue: Uint8Array): Promise<string> {
      return zip(torchEntries(dictPickle([['w', tensorPickle('0', 2, [2], [1])], ['x', evilValue]]), { '0': f32bytes([1, 2]) }));
    }
    const call = (module: string, name: string, arg: Uint8Array): Uint8Array => cat(P.global(module, name), arg, P.TUPLE1, P.REDUCE);

    for (const [module, name, argOf] of [
      ['os', 'system', (m: string) => P.str(`touch ${m}`)],
      ['posix', 'system', (m: string) => P.str(`touch ${m}`)],
      ['builtins', 'eval', (m: string) => P.str(`open(${JSON.stringify(m)}, 'w')`)],
      ['builtins', 'exec', (m: string) => P.str(`open(${JSON.stringify(m)}, 'w')`)],
      ['subprocess', 'Popen', (m: string) => cat(P.EMPTY_LIST, P.str('touch'), P.APPEND, P.str(m), P.APPEND)],
      ['torch', 'load', (m: string) => P.str(m)],
    ] as const) {
      it(`refuses REDUCE of ${module}.${name}, and nothing runs`, async () => {
        const m = marker();
        await refuses(await evil(call(module, name, argOf(m))), new RegExp(`REDUCE of global ${module}\\.${name} refused`));
        assert.equal(existsSync(m), false);
      });
    }

    it('refuses the python-written os.system pickle (GLOBAL posix system)', async () => {
      const m = '/tmp/fusegraph-evil-marker';
      await rm(m, { force: true });
      await refuses(path.join(FIXTURES, 'evil-posix-system.pt'), /REDUCE of global posix\.system refused/);
      assert.equal(existsSync(m), false);
    });

    it('refuses a STACK_GLOBAL route to builtins.eval, NEWOBJ and BUILD of placeholders', async () => {
      await refuses(await evil(cat(P.str('builtins'), P.str('eval'), P.STACK_GLOBAL, P.str('1'), P.TUPLE1, P.REDUCE)), /REDUCE of global builtins\.eval refused/);
      await refuses(await evil(cat(P.global('subprocess', 'Popen'), P.EMPTY_TUPLE, P.NEWOBJ)), /NEWOBJ of global subprocess\.Popen refused/);
      await refuses(await evil(cat(P.global('pytorch_lightning.callbacks', 'ModelCheckpoint'), P.EMPTY_DICT, P.BUILD)), /BUILD of global pytorch_lightning\.callbacks\.ModelCheckpoint refused/);
      await refuses(await evil(cat(P.global('torch._utils', '_rebuild_tensor_v2'), P.EMPTY_DICT, P.BUILD)), /BUILD of global torch\._utils\._rebuild_tensor_v2 refused/);
      // An allowed callable returning something that is then called: REDUCE applies only to globals.
      await refuses(await evil(cat(P.global('collections', 'OrderedDict'), P.EMPTY_TUPLE, P.REDUCE, P.EMPTY_TUPLE, P.REDUCE)), /REDUCE applied to dict/);
      await refuses(await evil(cat(P.global('torch._tensor', '_rebuild_from_type_v2'), P.MARK, P.global('os', 'system'), P.global('torch', 'Tensor'), P.MARK, P.str('x'), P.TUPLE, P.EMPTY_DICT, P.TUPLE, P.REDUCE)), /global os\.system refused/);
    });

    it('refuses unknown and unsupported opcodes by name', async () => {
      await refuses(await evil(cat(P.global('os', 'system'), [0x69])), /opcode INST \(0x69\) is not supported/); // placed after a GLOBAL: still refused
      await refuses(await evil(Uint8Array.from([0x69, ...Buffer.from('os\nsystem\n')])), /opcode INST \(0x69\)/);
      await refuses(await evil(Uint8Array.from([0x82, 1])), /opcode EXT1 \(0x82\)/);
      await refuses(await evil(Uint8Array.from([0xff])), /opcode unknown \(0xff\)/);
      await refuses(await evil(Uint8Array.from([0x53, ...Buffer.from("'x'\n")])), /opcode STRING \(0x53\)/);
    });

    it('refuses lengths past the end of the pickle', async () => {
      const len = (op: number, n: bigint, bytes: number): Uint8Array => {
        const b = Buffer.alloc(bytes);
        if (bytes === 8) b.writeBigUInt64LE(n);
        else if (bytes === 4) b.writeUInt32LE(Number(n));
        else b.writeUInt8(Number(n));
        return Uint8Array.from([op, ...b]);
      };
      await refuses(await evil(len(0x58, 0xffffffffn, 4)), /BINUNICODE of 4294967295 bytes runs past the end of the pickle/);
      await refuses(await evil(len(0x8d, 2n ** 62n, 8)), /BINUNICODE8 of 4611686018427387904 bytes runs past the end/);
      await refuses(await evil(len(0x8e, 2n ** 63n, 8)), /BINBYTES8 of 9223372036854775808 bytes runs past the end/);
      await refuses(await evil(len(0x42, 1000000n, 4)), /BINBYTES of 1000000 bytes runs past the end/);
      await refuses(await evil(len(0x8b, 0x7fffffffn, 4)), /LONG4 of 2147483647 bytes is over the 1024-byte limit/);
      await refuses(await evil(len(0x8a, 200n, 1)), /LONG1 of 200 bytes runs past the end/);
      await refuses(await evil(cat([0x63], Buffer.from('os'.repeat(2000)))), /GLOBAL module is not a newline-terminated name/);
    });

    it('refuses a pickle with no STOP, a memo read before write and stack underflow', async () => {
      const file = await zip(torchEntries(cat(P.proto(), P.EMPTY_DICT), {}));
      await refuses(file, /pickle ends without STOP/);
      await refuses(await evil(Uint8Array.from(P.binget(7))), /memo entry 7 read before it was written/);
      await refuses(await evil(cat(P.POP, P.POP, P.POP, P.POP, P.POP, P.POP)), /stack underflow|no MARK/);
    });

    it('refuses a million MARKs without exhausting memory', async () => {
      await refuses(await evil(new Uint8Array(1_000_000).fill(0x28)), /pickle stack deeper than 100000/);
    });
    it('refuses a million nested EMPTY_LISTs before their APPENDs', async () => {
      await refuses(await evil(cat(new Uint8Array(1_000_000).fill(0x5d), new Uint8Array(999_999).fill(0x61))), /pickle stack deeper than 100000/);
    });
    it('survives a 300,000-deep (and a cyclic) list chain built through the memo: no recursion anywhere', async () => {
      // [ [ [ ... ] ] ]: each new list is appended to the one fetched back from the memo, so the stack stays small.
      const step = cat(P.binget(0), P.EMPTY_LIST, P.binput(0), P.APPEND, P.POP);
      const steps = 300_000; // far past any JS recursion limit (~10,000 frames)
      const chain = new Uint8Array(3 + steps * step.length);
      chain.set(cat(P.EMPTY_LIST, P.binput(0)));
      for (let i = 0; i < steps; i++) chain.set(step, 3 + i * step.length);
      const cyclic = cat(P.EMPTY_LIST, P.binput(1), P.binget(1), P.APPEND);
      const pickle = dictPickle([
        ['w', tensorPickle('0', 2, [2], [1])],
        ['deep', chain],
        ['cyclic', cyclic],
      ]);
      const file = await zip(torchEntries(pickle, { '0': f32bytes([1, 2]) }));
      const before = process.memoryUsage().rss;
      const tf = await openTensorFile(file);
      assert.ok(process.memoryUsage().rss - before < 200 * MB);
      assert.deepEqual([...tf.tensors.keys()], ['w']);
      await tf.close();
    });

    it('refuses unsupported storage types and malformed persistent ids', async () => {
      await refuses(await evil(cat(persid('1', 1, 'QInt8Storage'))), /storage type torch\.QInt8Storage is not supported/);
      await refuses(await evil(cat(persid('1', 1, 'ComplexFloatStorage'))), /storage type torch\.ComplexFloatStorage is not supported/);
      await refuses(await evil(cat(P.str('x'), P.BINPERSID)), /persistent id is not \('storage'/);
      await refuses(await evil(cat(P.MARK, P.str('storage'), P.global('os', 'system'), P.str('0'), P.str('cpu'), P.int(1), P.TUPLE, P.BINPERSID)), /storage type os\.system is not supported/);
      await refuses(await evil(persid('../../x', 1)), /storage key "..\/..\/x" is not a plain name/);
      await refuses(await evil(persid('0', 5)), /storage 0 is declared twice with different types or sizes/);
    });

    it('refuses containers used as what they are not', async () => {
      await refuses(await evil(cat(P.EMPTY_LIST, P.str('k'), P.str('v'), P.SETITEM)), /SETITEM\(S\) on list, not a dict/);
      await refuses(await evil(cat(P.EMPTY_DICT, P.str('v'), P.APPEND)), /APPEND\(S\) on dict, not a list/);
      await refuses(await evil(cat(P.global('torch._utils', '_rebuild_tensor_v2'), P.MARK, P.str('x'), P.int(0), P.EMPTY_TUPLE, P.EMPTY_TUPLE, P.TUPLE, P.REDUCE)), /first argument is str, not a storage/);
    });

    it('a __proto__ key in the pickled state dict is only a name', async () => {
      const pickle = dictPickle([
        ['__proto__', tensorPickle('0', 2, [2], [1])],
        ['constructor', cat(P.EMPTY_DICT, P.str('polluted'), P.NEWTRUE, P.SETITEM)],
      ]);
      const tf = await openTensorFile(await zip(torchEntries(pickle, { '0': f32bytes([1, 2]) })));
      assert.deepEqual([...tf.tensors.keys()], ['__proto__']);
      assert.deepEqual([...(await tf.readFloat32('__proto__'))], [1, 2]);
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      await tf.close();
    });

    it('refuses a checkpoint with no tensors, or a top object that is not a dict', async () => {
      await refuses(await zip(torchEntries(dictPickle([['epoch', P.int(3)]]))), /no tensors found \(no state_dict; top-level keys: "epoch"\)/);
      await refuses(await zip(torchEntries(cat(P.proto(), P.EMPTY_LIST, P.STOP))), /top object is not a dict/);
    });
  });
});
