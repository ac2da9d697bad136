import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ModelManager } from '../../server/runtime/model-manager.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

describe('ModelManager', () => {
  let ws: TinyWorkspace;
  before(async () => {
    ws = await tinyWorkspace({ a: { seed: 1 }, b: { seed: 2 } });
  });
  after(() => ws.cleanup());

  it('creates sessions once per (folder, provider) and reuses them', async () => {
    const m = new ModelManager({ threads: 1 });
    try {
      const first = await m.acquire(path.join(ws.models, 'a'), 'cpu');
      const again = await m.acquire(path.join(ws.models, 'a'), 'cpu');
      assert.equal(first, again);
      assert.equal(first.provider, 'cpu');
      assert.equal(m.loadedKeys().length, 1);
    } finally {
      await m.dispose();
    }
  });

  it('evicts the least recently used idle model when the memory budget would be exceeded', async () => {
    const probe = new ModelManager({ threads: 1 });
    const bytes = (await probe.acquire(path.join(ws.models, 'a'), 'cpu')).folder.bytes;
    await probe.dispose();

    const m = new ModelManager({ threads: 1, maxBytes: Math.floor(bytes * 1.5) });
    try {
      const a = await m.acquire(path.join(ws.models, 'a'), 'cpu');
      m.release(a);
      const b = await m.acquire(path.join(ws.models, 'b'), 'cpu');
      // a was idle and least recently used: loading b evicted it and closed its worker.
      assert.deepEqual(m.loadedKeys().map((k) => path.basename(k.split('|')[0]!)), ['b']);
      await assert.rejects(a.encodeText([a.tokenizer.encodePadded('')]), /exited/);
      // b is in use, so loading a again goes over budget rather than pulling b away from its run.
      const a2 = await m.acquire(path.join(ws.models, 'a'), 'cpu');
      assert.notEqual(a2, a);
      assert.deepEqual(m.loadedKeys().map((k) => path.basename(k.split('|')[0]!)).sort(), ['a', 'b']);
      assert.equal((await b.encodeText([b.tokenizer.encodePadded('')])).shape[0], 1);
    } finally {
      await m.dispose();
    }
  });

  it('names the missing files of an incomplete folder and forgets the failed load', async () => {
    const m = new ModelManager({ threads: 1 });
    try {
      await assert.rejects(m.acquire(path.join(ws.models, 'nope'), 'cpu'), /model folder not found: .*nope/);
      await assert.rejects(m.acquire(ws.models, 'cpu'), /missing: .*text_encoder\/model.onnx/);
      assert.deepEqual(m.loadedKeys(), []);
      const listing = await m.listModels(ws.models);
      assert.deepEqual(listing.map((l) => l.path), ['a', 'b']);
    } finally {
      await m.dispose();
    }
  });
});
