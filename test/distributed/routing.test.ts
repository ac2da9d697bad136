import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { modelsOf, routeOf, routingIssues } from '../../server/services/distributed/routing.js';
import { Grace, residentElsewhere } from '../../server/services/distributed/preference.js';
import type { WorkerInfo } from '../../nodes/protocol.js';
import { bundledGraph } from '../helpers/graphs.js';
import { validateGraph } from '../../server/engine/validate.js';

function worker(name: string, paths: string[], o: Partial<WorkerInfo> = {}): WorkerInfo {
  return {
    id: name, name, provider: 'cpu', concurrency: 1, resident: [], running: [], runs_done: 0, started_at: 0, last_heartbeat: 0,
    models: paths.map((path) => ({ path, bytes: 1, sha256: { unet: 'x' } })),
    ...o,
  };
}

describe('scale-out routing', () => {
  const demo = validateGraph(bundledGraph('demo-fusion')).plan!;

  it('finds the model folders a run loads', () => {
    assert.deepEqual(modelsOf(demo).map((m) => [m.node, m.path]).sort(), [['base_model', 'demo/general'], ['other_model', 'demo/cartoon']]);
  });

  it('gives one queue per set of folders, whatever their order', () => {
    assert.equal(routeOf(['b', 'a', 'a']).queue, routeOf(['a', 'b']).queue);
    assert.notEqual(routeOf(['a']).queue, routeOf(['a', 'b']).queue);
    assert.deepEqual(routeOf(['b', 'a']).paths, ['a', 'b']);
  });

  it('accepts a run one worker serves whole', () => {
    assert.deepEqual(routingIssues(demo, [worker('w', ['demo/general', 'demo/cartoon', 'x'])]), []);
  });

  it('names the LoadModel whose folder no worker has', () => {
    const issues = routingIssues(demo, [worker('w', ['demo/general'])]);
    assert.deepEqual(issues.map((i) => [i.node, i.field, i.code, i.actual]), [['other_model', 'params.path', 'model_unavailable', 'demo/cartoon']]);
  });

  it('names every LoadModel when the folders exist but never on one worker', () => {
    const issues = routingIssues(demo, [worker('a', ['demo/general']), worker('b', ['demo/cartoon'])]);
    assert.deepEqual(issues.map((i) => i.node).sort(), ['base_model', 'other_model']);
    assert.match(issues[0]!.message, /no single live worker/);
  });

  it('says so when no worker is connected', () => {
    assert.match(routingIssues(demo, [])[0]!.message, /no worker is connected/);
  });
});

describe('scale-out residency preference', () => {
  const set = ['demo/cartoon', 'demo/general'];

  it('names another worker only when it serves the set, has all of it loaded and a slot free', () => {
    const loaded = worker('a', set, { resident: set });
    assert.equal(residentElsewhere('b', set, [loaded])?.name, 'a');
    assert.equal(residentElsewhere('a', set, [loaded]), undefined, 'never itself');
    assert.equal(residentElsewhere('b', set, [worker('a', set, { resident: ['demo/general'] })]), undefined, 'part of the set loaded');
    assert.equal(residentElsewhere('b', set, [worker('a', set, { resident: set, running: ['r1'] })]), undefined, 'busy');
    assert.equal(residentElsewhere('b', set, [worker('a', set, { resident: set, running: ['r1'], concurrency: 2 })])?.name, 'a', 'a slot left');
  });

  it('holds a job back for the grace from when this worker first saw it, then lets it go', () => {
    const grace = new Grace(1000);
    assert.equal(grace.left('j1', 10_000), 1000);
    assert.equal(grace.left('j1', 10_400), 600);
    assert.equal(grace.left('j2', 10_400), 1000, 'each job has its own grace');
    assert.equal(grace.left('j1', 11_000), 0);
    assert.equal(grace.left('j1', 20_000), 0);
  });
});
