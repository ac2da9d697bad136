import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { openSafetensors } from '../../server/checkpoint/formats/safetensors.js';
import { safetensorsLayout, writeSafetensors, type SafetensorsWriteEntry } from '../../server/checkpoint/formats/safetensors-writer.js';
import { f32ToF16Bits } from '../../server/runtime/float16.js';
import { DTYPE_BYTES } from '../../server/checkpoint/tensor-file.js';

const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

describe('safetensors', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-safetensors-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  // One entry per dtype, with values that survive float32 conversion exactly; `float` is what readFloat32 gives.
  const f32 = new Float32Array([0, -1.5, 3.25, 1e-3, -65504, 2 ** -20]);
  const f16Values = [0, -1.5, 3.25, 65504, -(2 ** -24), 0.333251953125];
  const bf16Values = [0, -1.5, 3.25, 2 ** 100, -(2 ** -100), 1 / 3];
  const bf16Bits = new Uint16Array(bf16Values.map((v) => new Uint32Array(new Float32Array([v]).buffer)[0]! >>> 16));
  const cases: { entry: SafetensorsWriteEntry; float: number[] }[] = [
    { entry: { name: 'a.f32', dtype: 'F32', shape: [2, 3], data: f32 }, float: [...f32] },
    { entry: { name: 'a.f16', dtype: 'F16', shape: [3, 2], data: new Uint16Array(f16Values.map(f32ToF16Bits)) }, float: f16Values },
    {
      entry: { name: 'a.bf16', dtype: 'BF16', shape: [6], data: bf16Bits },
      float: [...bf16Bits].map((b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!),
    },
    { entry: { name: 'a.f64', dtype: 'F64', shape: [2], data: new Float64Array([Math.PI, -2.5]) }, float: [Math.fround(Math.PI), -2.5] },
    { entry: { name: 'pos_ids', dtype: 'I64', shape: [1, 4], data: new BigInt64Array([0n, 1n, -7n, 2n ** 40n]) }, float: [0, 1, -7, 2 ** 40] },
    { entry: { name: 'a.i32', dtype: 'I32', shape: [3], data: new Int32Array([-2147483648, 0, 12345]) }, float: [-2147483648, 0, 12345] },
    { entry: { name: 'a.i16', dtype: 'I16', shape: [2], data: new Int16Array([-32768, 32767]) }, float: [-32768, 32767] },
    { entry: { name: 'a.i8', dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) }, float: [-128, 127] },
    { entry: { name: 'a.u8', dtype: 'U8', shape: [3], data: new Uint8Array([0, 128, 255]) }, float: [0, 128, 255] },
    { entry: { name: 'a.bool', dtype: 'BOOL', shape: [2, 2], data: new Uint8Array([1, 0, 0, 1]) }, float: [1, 0, 0, 1] },
    { entry: { name: 'scalar', dtype: 'F32', shape: [], data: new Float32Array([7]) }, float: [7] },
    { entry: { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint16Array(0) }, float: [] },
    { entry: { name: '__proto__', dtype: 'F32', shape: [1], data: new Float32Array([42]) }, float: [42] },
  ];

  it('round-trips every dtype through the writer, with metadata, aligned offsets and a padded header', async () => {
    const file = path.join(dir, 'all.safetensors');
    await writeSafetensors(
      file,
      cases.map((c) => c.entry),
      { format: 'pt', note: 'ünïcode' },
    );
    const raw = await readFile(file);
    const n = Number(raw.readBigUInt64LE(0));
    assert.equal(n % 8, 0);
    assert.ok(raw.subarray(8, 8 + n).toString('utf8').endsWith('}') || raw.subarray(8, 8 + n).toString('utf8').trimEnd().endsWith('}'));

    const st = await openSafetensors(file);
    try {
      assert.equal(st.format, 'safetensors');
      assert.equal(st.bytes, raw.length);
      assert.equal(st.dataStart, 8 + n);
      assert.deepEqual(st.metadata && [...st.metadata], [
        ['format', 'pt'],
        ['note', 'ünïcode'],
      ]);
      assert.equal(st.tensors.size, cases.length);
      for (const { entry, float } of cases) {
        const t = st.tensors.get(entry.name);
        assert.ok(t, entry.name);
        assert.equal(t.dtype, entry.dtype);
        assert.deepEqual(t.shape, entry.shape);
        assert.equal(t.byteLength, (entry.data as ArrayBufferView).byteLength);
        assert.equal((t.fileOffset - st.dataStart) % DTYPE_BYTES[t.dtype], 0, `${entry.name} aligned`);
        assert.deepEqual(await st.readBytes(entry.name), bytesOf(entry.data as ArrayBufferView));
        assert.deepEqual([...(await st.readFloat32(entry.name))], float, entry.name);
      }
      assert.equal(({} as Record<string, unknown>).dtype, undefined);
      await assert.rejects(st.readBytes('missing'), /no tensor named "missing"/);
    } finally {
      await st.close();
    }
    await assert.rejects(st.readBytes('a.f32'), /read after close/);
  });

  it('readBytes returns a fresh buffer each time', async () => {
    const file = path.join(dir, 'fresh.safetensors');
    await writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]);
    const st = await openSafetensors(file);
    const a = await st.readBytes('x');
    a.fill(0);
    assert.deepEqual([...(await st.readFloat32('x'))], [1, 2]);
    assert.equal(a.byteOffset, 0);
    await st.close();
  });

  it('takes data as a function, called in file order, one tensor at a time', async () => {
    const file = path.join(dir, 'lazy.safetensors');
    const calls: string[] = [];
    const lazy = (name: string, v: Float32Array): SafetensorsWriteEntry => ({
      name,
      dtype: 'F32',
      shape: [v.length],
      data: async () => {
        calls.push(name);
        return v;
      },
    });
    await writeSafetensors(file, [lazy('b', new Float32Array([2])), lazy('a', new Float32Array([1, 1]))]);
    assert.deepEqual(calls, ['a', 'b']);
    const st = await openTensorFile(file);
    assert.deepEqual([...(await st.readFloat32('b'))], [2]);
    await st.close();
  });

  it('refuses a wrong data length and leaves no file behind', async () => {
    const file = path.join(dir, 'bad-write.safetensors');
    await assert.rejects(writeSafetensors(file, [{ name: 'x', dtype: 'F32', shape: [3], data: new Float32Array(2) }]), /needs 12/);
    await assert.rejects(stat(file), { code: 'ENOENT' });
    assert.throws(() => safetensorsLayout([{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) }, { name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) }]), /duplicate/);
  });

  it('is chosen by content, not extension', async () => {
    const file = path.join(dir, 'renamed.ckpt');
    await writeSafetensors(file, [{ name: 'w', dtype: 'F16', shape: [1], data: new Uint16Array([f32ToF16Bits(0.5)]) }]);
    const tf = await openTensorFile(file);
    assert.equal(tf.format, 'safetensors');
    assert.deepEqual([...(await tf.readFloat32('w'))], [0.5]);
    await tf.close();
  });

  it('reads a tensor stored beyond 4 GiB (sparse file)', async () => {
    const file = path.join(dir, 'big.safetensors');
    const big = 4 * 1024 ** 3 + 64; // bytes of F32 zeros before the last tensor: offsets pass 2^32
    const tail = new Float32Array([1.5, -2, 3, 4.25]);
    const layout = safetensorsLayout([
      { name: 'a.filler', dtype: 'F32', shape: [big / 4], data: new Float32Array(0) },
      { name: 'z.tail', dtype: 'F32', shape: [4], data: tail },
    ]);
    const last = layout.entries[1]!;
    assert.ok(last.fileOffset > 2 ** 32);
    const fh = await open(file, 'w');
    await fh.write(layout.head, 0, layout.head.length, 0);
    await fh.close();
    await truncate(file, layout.fileBytes - last.byteLength);
    const fh2 = await open(file, 'r+');
    await fh2.write(bytesOf(tail), 0, last.byteLength, last.fileOffset);
    await fh2.close();
    assert.equal((await stat(file)).size, layout.fileBytes);

    const st = await openTensorFile(file);
    try {
      assert.equal(st.bytes, layout.fileBytes);
      assert.deepEqual([...(await st.readFloat32('z.tail'))], [...tail]);
      assert.equal(st.tensors.get('a.filler')!.byteLength, big);
    } finally {
      await st.close();
    }
  });

  it('reads a hand-written file whose tensors are out of JSON order and unaligned', async () => {
    const file = path.join(dir, 'hand.safetensors');
    const header = JSON.stringify({ b: { dtype: 'F32', shape: [1], data_offsets: [1, 5] }, a: { dtype: 'U8', shape: [1], data_offsets: [0, 1] } });
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const data = Buffer.alloc(5);
    data[0] = 9;
    data.writeFloatLE(-0.25, 1);
    await writeFile(file, Buffer.concat([len, Buffer.from(header), data]));
    const st = await openSafetensors(file);
    assert.deepEqual([...(await st.readFloat32('b'))], [-0.25]);
    assert.deepEqual([...(await st.readFloat32('a'))], [9]);
    assert.equal(st.metadata, null);
    await st.close();
  });
});
