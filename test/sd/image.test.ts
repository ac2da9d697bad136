import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { roundHalfEven, toRgbBytes } from '../../server/sd/image.js';
import { encodePngWithMetadata, readGraphFromPng, readPngText } from '../../server/sd/png-meta.js';
import { txt2imgGraph } from '../helpers/graphs.js';

describe('decoded image → bytes', () => {
  it('rounds half to even like numpy', () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, 4, -0, 2, 3]);
  });

  it('maps [-1, 1] through clip(x/2 + 0.5) · 255 with NumPy rounding and interleaves channels', () => {
    // x such that (x/2 + 0.5)·255 lands on .5 exactly: 127.5 → 128 (even), 0.5 → 0, 254.5 → 254.
    const v = (p: number): number => (p / 255 - 0.5) * 2;
    const planes = Float32Array.from([v(127.5), -3, v(0.5), 2, v(254.5), 0]); // [3 channels][1×2 pixels]
    const rgb = toRgbBytes(planes, 1, 2);
    // Pixel 0 takes element 0 of each channel plane. Values checked with NumPy float32 arithmetic.
    assert.deepEqual([...rgb], [128, 0, 254, 0, 255, 128]);
  });
});

describe('PNG metadata', () => {
  it('round-trips the graph through an iTXt chunk that other tools still read as a valid PNG', async () => {
    const graph = txt2imgGraph('m');
    const png = await encodePngWithMetadata(new Uint8Array(4 * 4 * 3).fill(200), 4, 4, { graph, note: 'ünïcode ✓' });
    const meta = await sharp(png).metadata();
    assert.equal(meta.width, 4);
    assert.deepEqual(readGraphFromPng(png), graph);
    assert.equal((JSON.parse(readPngText(png).get('fusegraph')!) as { note: string }).note, 'ünïcode ✓');
  });

  it('returns null for a PNG without a graph and throws for non-PNG bytes', async () => {
    const plain = await sharp({ create: { width: 2, height: 2, channels: 3, background: '#fff' } }).png().toBuffer();
    assert.equal(readGraphFromPng(plain), null);
    const invalid = await encodePngWithMetadata(new Uint8Array(12), 2, 2, { graph: { format: 'nope' } });
    assert.equal(readGraphFromPng(invalid), null);
    assert.throws(() => readPngText(Buffer.from('GIF89a')), /not a PNG/);
    // A graph that no longer validates (here an unknown node type) is still handed back, for the caller to report.
    const stale = txt2imgGraph('m');
    stale.nodes.save!.type = 'RetiredNode';
    assert.deepEqual(readGraphFromPng(await encodePngWithMetadata(new Uint8Array(12), 2, 2, { graph: stale })), stale);
  });
});
