import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { entryBytes, NodeCache } from '../../server/engine/cache.js';

const latent = (values: number) => ({ latent: { data: new Float32Array(values), shape: [values] } });

describe('NodeCache is bounded by bytes (issue 14, defect 7)', () => {
  it('counts the tensors of an entry', () => {
    assert.equal(entryBytes(latent(10)), 40);
    assert.equal(entryBytes({ image: { data: new Float32Array(3), shape: [3] }, files: [{ name: 'a.png' }] }), 12);
    assert.equal(entryBytes({ raw: new Uint8Array(7) }), 7);
  });

  it('evicts least recently used entries beyond its byte budget', () => {
    const cache = new NodeCache({ maxBytes: 1000 });
    cache.set('a', latent(100)); // 400 bytes
    cache.set('b', latent(100));
    assert.ok(cache.get('a'), 'a is now the most recently used');
    cache.set('c', latent(100));
    assert.equal(cache.bytes, 800);
    assert.deepEqual(['a', 'b', 'c'].map((k) => cache.get(k) !== undefined), [true, false, true]);
    cache.set('a', latent(50)); // replacing an entry updates the count
    assert.equal(cache.bytes, 600);
  });

  it('does not keep an entry larger than the whole budget (a 4096² latent), and keeps what it had', () => {
    const cache = new NodeCache({ maxBytes: 1000 });
    cache.set('small', latent(10));
    cache.set('huge', latent(3 * 4096 * 4096));
    assert.equal(cache.get('huge'), undefined);
    assert.ok(cache.get('small'));
    assert.equal(cache.bytes, 40);
  });
});
