import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { applyRunMessage, beginRun } from '../../client/runs/node-status.js';
import type { StatusMap } from '../../client/runs/node-status.js';
import { stepFeeds } from '../../client/runs/step-feeds.js';
import { getNodeDef, parseGraph } from '../../nodes/index.js';

const demo = parseGraph(JSON.parse(readFileSync(new URL('../../graphs/demo-fusion.json', import.meta.url), 'utf8'))).graph!;
const R = 'run-1';

describe('per-step nodes follow the sampler that evaluates them', () => {
  it('finds each sampler\'s per-step nodes in the demo graph, through per-step links only', () => {
    const feeds = stepFeeds(demo, getNodeDef);
    assert.deepStrictEqual([...feeds.keys()].sort(), ['sample_base', 'sample_fused', 'sample_other']);
    assert.deepStrictEqual([...feeds.get('sample_fused')!].sort(), ['eps_base', 'eps_other', 'saliency_base', 'saliency_other', 'schedule', 'snb']);
    assert.deepStrictEqual(feeds.get('sample_other'), ['eps_other_alone']);
  });

  it('shows them "per step" while their sampler runs, done after, and cancelled with it', () => {
    const feeds = stepFeeds(demo, getNodeDef);
    const map: StatusMap = new Map();
    beginRun(map, Object.keys(demo.nodes));
    applyRunMessage(map, { type: 'node_started', run_id: R, node: 'sample_base' }, feeds);
    assert.deepStrictEqual(map.get('eps_base'), { state: 'running', perStep: true });
    assert.equal(map.get('eps_other_alone')?.state, 'queued');
    applyRunMessage(map, { type: 'node_done', run_id: R, node: 'sample_base', ms: 5 }, feeds);
    assert.equal(map.get('eps_base')?.state, 'done');
    applyRunMessage(map, { type: 'progress', run_id: R, node: 'sample_other', step: 3, steps: 10, t: 500 }, feeds);
    assert.equal(map.get('eps_other_alone')?.state, 'running');
    applyRunMessage(map, { type: 'cancelled', run_id: R }, feeds);
    // The stopped sampler keeps its partial progress and says it was stopped; what never started is idle again.
    assert.deepStrictEqual(map.get('sample_other'), { state: 'cancelled', progress: { step: 3, steps: 10, t: 500 } });
    assert.equal(map.get('eps_other_alone')?.state, 'cancelled');
    assert.equal(map.get('save_fused')?.state, undefined);
  });
});
