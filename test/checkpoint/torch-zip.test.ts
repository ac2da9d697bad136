import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { deflateRawSync } from 'node:zlib';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { openTorchZip, type TorchFile } from '../../server/checkpoint/formats/torch-zip.js';
import { DTYPE_BYTES, type StoredDtype } from '../../server/checkpoint/tensor-file.js';
import { fromFloat16Array } from '../../server/runtime/float16.js';
import { P, cat, dictPickle, f32bytes, tensorPickle, torchEntries, writeZip } from '../helpers/hand-made-checkpoints.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'checkpoints', 'formats');

type Expected = Record<string, { dtype: StoredDtype; shape: number[]; hex: string }>;

async function expected(name: string): Promise<Map<string, Expected[string]>> {
  // A Map, since one of the names is __proto__.
  return new Map(Object.entries(JSON.parse(await readFile(path.join(FIXTURES, name), 'utf8')) as Expected));
}

async function assertMatches(tf: TorchFile, want: Map<string, Expected[string]>): Promise<void> {
  assert.deepEqual([...tf.tensors.keys()].sort(), [...want.keys()].sort());
  for (const [name, w] of want) {
    const t = tf.tensors.get(name)!;
    assert.equal(t.dtype, w.dtype, name);
    assert.deepEqual(t.shape, w.shape, name);
    assert.equal(t.byteLength, w.hex.length / 2, name);
    assert.equal(Buffer.from(await tf.readBytes(name)).toString('hex'), w.hex, name);
    const f = await tf.readFloat32(name);
    assert.equal(f.length, t.byteLength / DTYPE_BYTES[t.dtype], name);
  }
}

describe('PyTorch zip checkpoints', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-torch-zip-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a Lightning-style SD checkpoint written by torch.save (protocol 2, archive/ folder)', async () => {
    const tf = (await openTensorFile(path.join(FIXTURES, 'sd-like.ckpt'))) as TorchFile;
    try {
      assert.equal(tf.format, 'torch');
      assert.equal(tf.archiveName, 'archive');
      assert.equal(tf.stateDictKey, 'state_dict');
      assert.equal(tf.metadata, null);
      assert.deepEqual([...tf.placeholderGlobals], ['pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint']);
      await assertMatches(tf, await expected('sd-like.expected.json'));

      // Flattened EMA keys and the EMA scalars are tensors like any other.
      assert.deepEqual(tf.tensors.get('model_ema.decay')!.shape, []);
      assert.deepEqual([...(await tf.readFloat32('model_ema.num_updates'))], [470000]);
      assert.ok(tf.tensors.has('model_ema.diffusion_modelinput_blocks00weight'));
      assert.ok(!tf.tensors.has('epoch') && !tf.tensors.has('global_step'));

      // Three views of one storage, at element offsets 0, 6 and 24.
      const [a, b, c] = ['shared.first', 'shared.second', 'shared.tail'].map((n) => tf.tensors.get(n)!);
      assert.equal(a!.storageKey, b!.storageKey);
      assert.equal(b!.storageKey, c!.storageKey);
      assert.deepEqual([a!.storageOffset, b!.storageOffset, c!.storageOffset], [0, 6, 24]);
      assert.deepEqual([...(await tf.readFloat32('shared.second'))], Array.from({ length: 18 }, (_, i) => (i + 6) / 8));

      // A transposed view is not contiguous; its bytes come back in C order.
      const tr = tf.tensors.get('transposed')!;
      assert.equal(tr.contiguous, false);
      assert.deepEqual(tr.stride, [1, 4]);
      assert.deepEqual([...(await tf.readFloat32('transposed'))], [-5, -1, 3, -4, 0, 4, -3, 1, 5, -2, 2, 6]);

      // Conversions: f16 via the runtime's table, bf16 by bits, ints, bool.
      const h = await tf.readBytes('model.diffusion_model.h16');
      assert.deepEqual([...(await tf.readFloat32('model.diffusion_model.h16'))], [...fromFloat16Array(new Uint16Array(h.buffer))]);
      assert.deepEqual([...(await tf.readFloat32('model.diffusion_model.bf16'))].slice(0, 3), [1, -2.5, 3.140625]);
      assert.deepEqual([...(await tf.readFloat32('big_i64'))], [2 ** 40, -(2 ** 33), 0]);
      assert.deepEqual([...(await tf.readFloat32('mask'))], [1, 0, 1]);
      assert.deepEqual([...(await tf.readFloat32('param'))], [0.5, 0.25]);

      assert.ok(Object.hasOwn(Object.fromEntries(tf.tensors), '__proto__'));
      assert.equal(({} as Record<string, unknown>).dtype, undefined);
      assert.equal(tf.tensors.get('__proto__')!.dtype, 'F32');
    } finally {
      await tf.close();
    }
  });

  it('reads protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL) with a top folder named after the file', async () => {
    const tf = await openTorchZip(path.join(FIXTURES, 'protocol4.pt'));
    try {
      assert.equal(tf.archiveName, 'protocol4');
      assert.equal(tf.stateDictKey, '');
      await assertMatches(tf, await expected('protocol4.expected.json'));
      assert.equal(tf.tensors.get('a.view')!.storageOffset, 3);
    } finally {
      await tf.close();
    }
  });

  it("takes {'model': state_dict} and ignores non-tensor entries", async () => {
    const tf = (await openTensorFile(path.join(FIXTURES, 'wrapped-model.pt'))) as TorchFile;
    assert.equal(tf.stateDictKey, 'model');
    assert.deepEqual([...tf.tensors.keys()], ['w']);
    assert.deepEqual([...(await tf.readFloat32('w'))], [1, 2]);
    await tf.close();
  });

  it('is chosen by content, not extension', async () => {
    const file = path.join(dir, 'really-a-ckpt.safetensors');
    await copyFile(path.join(FIXTURES, 'sd-like.ckpt'), file);
    const tf = await openTensorFile(file);
    assert.equal(tf.format, 'torch');
    await tf.close();
  });

  it('reads a hand-made ZIP64 archive, a deflated data.pkl and a stride-0 view', async () => {
    const pickle = dictPickle([
      ['w', tensorPickle('0', 4, [2, 2], [2, 1])],
      ['row', tensorPickle('0', 4, [3, 2], [0, 1], 2)],
    ]);
    const entries = torchEntries(pickle, { '0': f32bytes([1, 2, 3, 4]) }, 'my model');
    entries[0] = { ...entries[0]!, data: deflateRawSync(pickle), method: 8, uncompressedSize: pickle.length };
    const file = path.join(dir, 'zip64.pt');
    await writeZip(file, entries, { zip64: true, comment: 'a comment' });
    const tf = await openTorchZip(file);
    try {
      assert.equal(tf.archiveName, 'my model');
      assert.deepEqual([...(await tf.readFloat32('w'))], [1, 2, 3, 4]);
      assert.equal(tf.tensors.get('row')!.contiguous, false);
      assert.deepEqual([...(await tf.readFloat32('row'))], [3, 4, 3, 4, 3, 4]);
    } finally {
      await tf.close();
    }
  });

  it('reads a storage that lies beyond 4 GiB in a sparse ZIP64 file', async () => {
    const bigNumel = 2 ** 30 + 4; // 4 GiB + 16 bytes
    const pickle = dictPickle([
      ['big', tensorPickle('0', bigNumel, [bigNumel], [1])],
      ['small', tensorPickle('1', 4, [2, 2], [2, 1])],
    ]);
    const file = path.join(dir, 'big.ckpt');
    await writeZip(
      file,
      [
        { name: 'archive/data.pkl', data: pickle },
        { name: 'archive/data/0', data: { sparse: bigNumel * 4 } },
        { name: 'archive/data/1', data: f32bytes([0.5, -1, 7, 8]) },
      ],
      { zip64: true },
    );
    const tf = (await openTensorFile(file)) as TorchFile;
    try {
      assert.ok(tf.bytes > 2 ** 32);
      assert.ok(tf.tensors.get('small')!.fileOffset > 2 ** 32);
      assert.equal(tf.tensors.get('big')!.byteLength, bigNumel * 4);
      assert.deepEqual([...(await tf.readFloat32('small'))], [0.5, -1, 7, 8]);
    } finally {
      await tf.close();
    }
  });

  it('keeps tensors of an OrderedDict state dict built with BUILD, and set/frozenset/bytes data around it', async () => {
    const od = cat(P.global('collections', 'OrderedDict'), P.EMPTY_TUPLE, P.REDUCE, P.MARK, P.str('t'), tensorPickle('0', 1, [1], [1]), P.SETITEMS, P.EMPTY_DICT, P.str('_metadata'), P.EMPTY_DICT, P.SETITEM, P.BUILD);
    const bytes = cat(P.global('_codecs', 'encode'), P.str('\u00ff\u0001'), P.str('latin1'), P.TUPLE2, P.REDUCE);
    const set = cat(P.global('builtins', 'set'), P.EMPTY_LIST, P.int(1), P.APPEND, P.TUPLE1, P.REDUCE);
    const pickle = dictPickle([
      ['state_dict', od],
      ['b', bytes],
      ['s', set],
    ]);
    const file = path.join(dir, 'od.pt');
    await writeZip(file, torchEntries(pickle, { '0': f32bytes([9]) }));
    const tf = await openTensorFile(file);
    assert.deepEqual([...tf.tensors.keys()], ['t']);
    assert.deepEqual([...(await tf.readFloat32('t'))], [9]);
    await tf.close();
  });
});
