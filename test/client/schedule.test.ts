import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { EditorModel } from '../../client/editor/graph-convert.js';
import { graphToModel } from '../../client/editor/graph-convert.js';
import { samplerNoiseSource, scheduleRole, scheduleSegments } from '../../client/editor/schedule.js';
import { getNodeDef, parseGraph } from '../../nodes/index.js';

const load = (name: string): EditorModel =>
  graphToModel(parseGraph(JSON.parse(readFileSync(new URL(`../../graphs/${name}.json`, import.meta.url), 'utf8'))).graph!, getNodeDef);
const spans = (model: EditorModel, start: string) => scheduleSegments(model, start, getNodeDef).map((s) => [s.label, s.from, s.to]);

describe('fusion schedule from the wired graph', () => {
  it('reads the demo graph: SNB while t > 20, then the general model; the plain samplers use one model throughout', () => {
    const demo = load('demo-fusion');
    assert.deepStrictEqual(spans(demo, 'schedule'), [['blend', 1000, 20], ['general', 20, 0]]);
    assert.equal(samplerNoiseSource(demo, 'sample_fused'), 'schedule');
    assert.deepStrictEqual(spans(demo, samplerNoiseSource(demo, 'sample_other')!), [['cartoon', 1000, 0]]);
  });

  it('follows a bypassed switch through its first noise input, and shows nothing past a muted one', () => {
    const demo = load('demo-fusion');
    const with_ = (mode: 'bypass' | 'mute') => ({ ...demo, nodes: demo.nodes.map((n) => (n.id === 'schedule' ? { ...n, mode } : n)) });
    assert.deepStrictEqual(spans(with_('bypass'), 'schedule'), [['blend', 1000, 0]]);
    assert.deepStrictEqual(spans(with_('mute'), 'schedule'), []);
  });

  it('splits nested switches and names models by their folder', () => {
    const cross = load('magicfusion-cross-domain');
    const segs = spans(cross, samplerNoiseSource(cross, 'sample_fused')!);
    assert.equal(segs[0]?.[0], 'blend');
    assert.equal(segs.at(-1)?.[2], 0);
    assert.ok(segs.every((s, i) => i === 0 || s[1] === segs[i - 1]![2]), 'spans are contiguous');
  });

  it('knows which nodes show a timeline', () => {
    assert.equal(scheduleRole(getNodeDef('SwitchAtTimestep')!), 'switch');
    assert.equal(scheduleRole(getNodeDef('DDIMStep')!), 'sampler');
    assert.equal(scheduleRole(getNodeDef('PredictNoise')!), null);
  });
});
