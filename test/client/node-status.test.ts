import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StatusMap } from '../../client/runs/node-status.js';
import type { SnapshotRun } from '../../nodes/protocol.js';
import { SnapshotRunSchema } from '../../nodes/protocol.js';
import { applyRunMessage, attachIssues, beginRun, clearFieldIssues, mergeSnapshot, statusesFromRun } from '../../client/runs/node-status.js';

const R = 'run-1';

/** A complete snapshot entry as the protocol defines it, with only the fields a test cares about given. */
function snapshotRun(fields: Partial<SnapshotRun> & Pick<SnapshotRun, 'status'>): SnapshotRun {
  return SnapshotRunSchema.parse({
    id: R, client_id: null, created_at: 0, started_at: null, finished_at: null, outputs: [], error: null, timings: null,
    node_states: {}, position: null, progress: null, cancel_requested: false, ...fields,
  });
}
const NO_TIMINGS = { queue_ms: null, run_ms: null, nodes: {} };

describe('node statuses from run events', () => {
  it('follows a node from queued through progress and preview to done', () => {
    const map: StatusMap = new Map();
    beginRun(map, ['model', 'sample', 'save']);
    assert.equal(map.get('sample')?.state, 'queued');
    applyRunMessage(map, { type: 'node_started', run_id: R, node: 'sample' });
    applyRunMessage(map, { type: 'progress', run_id: R, node: 'sample', step: 3, steps: 10, t: 701 });
    applyRunMessage(map, { type: 'preview', run_id: R, node: 'sample', step: 3, steps: 10, image: 'data:image/png;base64,AA' });
    assert.deepStrictEqual(map.get('sample')?.progress, { step: 3, steps: 10, t: 701 });
    assert.equal(map.get('sample')?.state, 'running');
    applyRunMessage(map, { type: 'node_done', run_id: R, node: 'sample', ms: 120 });
    assert.equal(map.get('sample')?.state, 'done');
    assert.equal(map.get('sample')?.preview, 'data:image/png;base64,AA');
    applyRunMessage(map, { type: 'node_cached', run_id: R, node: 'model' });
    assert.equal(map.get('model')?.state, 'cached');
  });

  it('collects output images and settles unreached nodes when the run ends', () => {
    const map: StatusMap = new Map();
    beginRun(map, ['save', 'unused']);
    applyRunMessage(map, { type: 'output', run_id: R, node: 'save', images: [{ name: 'a.png', url: '/api/images/a.png' }], latents: [] });
    applyRunMessage(map, { type: 'node_done', run_id: R, node: 'save', ms: 3 });
    const changed = applyRunMessage(map, { type: 'done', run_id: R, outputs: [], timings: NO_TIMINGS });
    assert.deepStrictEqual(changed, ['unused']);
    assert.equal(map.get('unused')?.state, undefined);
    assert.deepStrictEqual(map.get('save')?.images, [{ name: 'a.png', url: '/api/images/a.png' }]);
  });

  it('marks the failing node and stops the spinners of the others', () => {
    const map: StatusMap = new Map();
    beginRun(map, ['a', 'b']);
    applyRunMessage(map, { type: 'node_started', run_id: R, node: 'a' });
    applyRunMessage(map, { type: 'error', run_id: R, node: 'a', message: 'model folder not found' });
    assert.equal(map.get('a')?.state, 'error');
    assert.deepStrictEqual(map.get('a')?.error, { message: 'model folder not found' });
    assert.equal(map.get('b')?.state, undefined);
  });

  it('rebuilds statuses from a run record (reload, snapshot)', () => {
    const map = statusesFromRun(snapshotRun({
      status: 'running', node_states: { model: 'cached', sample: 'running' },
      progress: { node: 'sample', step: 4, steps: 8, t: 500 },
      outputs: [{ node: 'save', kind: 'image', name: 'x.png', url: '/x.png' }, { node: 'lat', kind: 'latent', name: 'x.npy', url: '/x.npy' }],
    }));
    assert.equal(map.get('model')?.state, 'cached');
    assert.deepStrictEqual(map.get('sample')?.progress, { step: 4, steps: 8, t: 500 });
    assert.equal(map.get('save')?.images?.length, 1);
    assert.equal(map.has('lat'), false);
  });

  it('merges a snapshot without losing the timings and previews live events brought', () => {
    const map: StatusMap = new Map();
    beginRun(map, ['model', 'sample', 'save']);
    applyRunMessage(map, { type: 'node_done', run_id: R, node: 'model', ms: 40 });
    applyRunMessage(map, { type: 'preview', run_id: R, node: 'sample', step: 1, steps: 4, image: 'data:,p' });
    mergeSnapshot(map, snapshotRun({ status: 'running', node_states: { model: 'done', sample: 'running' }, progress: { node: 'sample', step: 2, steps: 4, t: 500 } }));
    assert.deepStrictEqual(map.get('model'), { state: 'done', ms: 40 });
    assert.equal(map.get('sample')?.preview, 'data:,p');
    assert.equal(map.get('sample')?.progress?.step, 2);
    assert.equal(map.get('save')?.state, 'queued');
  });

  it('hangs validation issues on nodes and clears them field by field', () => {
    const map: StatusMap = new Map();
    const { changed, unplaced } = attachIssues(map, [
      { node: 'noise', field: 'params.width', code: 'param_range', message: 'too wide', expected: '<= 4096', actual: '9999' },
      { node: 'noise', field: 'seed', code: 'param_type', message: 'not an int' },
      { node: null, field: null, code: 'no_output_node', message: 'no output' },
    ]);
    assert.deepStrictEqual(changed, ['noise']);
    assert.equal(unplaced.length, 1);
    assert.equal(clearFieldIssues(map, 'noise', 'width'), true);
    assert.deepStrictEqual(map.get('noise')?.issues?.map((i) => i.field), ['seed']);
    assert.equal(clearFieldIssues(map, 'noise', 'width'), false);
  });
});
