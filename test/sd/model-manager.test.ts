import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ModelManager } from '../../server/sd/model-manager.js';
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
      await assert.rejects(a.encodeText([a.tokenizer.encodePadded('')]), /the model was released/);
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

  it('keeps each conditioning in the worker after its first call, forgetting the oldest beyond a few', async () => {
    const m = new ModelManager({ threads: 1 });
    try {
      const model = await m.acquire(path.join(ws.models, 'a'), 'cpu');
      const sample = { data: new Float32Array(2 * 4 * 8 * 8).map((_, i) => Math.sin(i)), shape: [2, 4, 8, 8] };
      const contexts = [];
      for (let i = 0; i < 20; i++) {
        const ids = model.tokenizer.encodePadded(`prompt number ${i}`);
        const enc = await model.encodeText([ids, ids]);
        contexts.push({ data: enc.data, shape: enc.shape });
      }
      const first = await Promise.all(contexts.map((c) => model.predict(sample, 500, c)));
      // Again, now that the early ones were dropped from the worker and the late ones are kept: same results.
      for (let i = contexts.length - 1; i >= 0; i--) assert.deepEqual(await model.predict(sample, 500, contexts[i]!), first[i], `context ${i}`);
      assert.notDeepEqual(first[0], first[1]);
      // A copy is a different array: it is sent afresh and gives the same numbers.
      assert.deepEqual(await model.predict(sample, 500, { data: Float32Array.from(contexts[3]!.data), shape: contexts[3]!.shape }), first[3]);
    } finally {
      await m.dispose();
    }
  });
});
