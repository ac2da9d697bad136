import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import type { RunningServer } from '../../server/http/start.js';
import { REPO_ROOT, txt2imgGraph } from '../helpers/graphs.js';
import { api, isTerminal, makeSandbox, startIn, WsClient, type Sandbox } from './helpers.js';

interface Issue { node: string | null; field: string | null; code: string; message: string; expected?: string }

/** The issue's reproductions run on the committed demo model (pixel space: VAE factor 1, three UNet levels). */
const demo = (o: { width?: number; height?: number; batch?: number; steps?: number } = {}): Graph => {
  const g = txt2imgGraph('demo/general', { steps: o.steps ?? 2 });
  g.nodes.noise!.params = { seed: 1, width: o.width ?? 32, height: o.height ?? 32, batch: o.batch ?? 1 };
  return g;
};

describe('admission control and model-aware checks (issue 14, defects 1 and 6)', () => {
  let sandbox: Sandbox;
  let server: RunningServer;
  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, { modelsRoot: path.join(REPO_ROOT, 'models'), maxRunMemory: 2 * 2 ** 30 });
  });
  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });

  const refused = async (graph: Graph): Promise<Issue[]> => {
    const started = performance.now();
    const res = await api<{ error: string; issues: Issue[] }>(server.url, '/api/runs', { body: { graph } });
    assert.equal(res.status, 400, JSON.stringify(res.body));
    assert.equal(res.body.error, 'invalid_graph');
    assert.ok(performance.now() - started < 5000, 'refused up front, not after running');
    return res.body.issues;
  };

  it('refuses NoiseLatent 4096×4096 up front, naming the node and field and the budget', async () => {
    const issues = await refused(demo({ width: 4096, height: 4096 }));
    assert.deepEqual(issues.map((i) => [i.node, i.field, i.code]), [['noise', 'params.width', 'too_large']]);
    assert.match(issues[0]!.message, /--max-run-memory/);
    assert.match(issues[0]!.message, /2\.0 GiB/);
  });

  it('refuses 1024×1024 batch 2', async () => {
    const issues = await refused(demo({ width: 1024, height: 1024, batch: 2 }));
    assert.deepEqual(issues.map((i) => [i.node, i.code]), [['noise', 'too_large']]);
  });

  it('refuses width 33 at validation (the UNet cannot halve it evenly), not deep in ONNX Runtime', async () => {
    const issues = await refused(demo({ width: 33 }));
    assert.deepEqual(issues.map((i) => [i.node, i.field, i.code, i.expected]), [['noise', 'params.width', 'param_range', 'a multiple of 4']]);
  });

  it('refuses steps 1000 (leading spacing with steps_offset 1 would need timestep 1000)', async () => {
    const issues = await refused(demo({ steps: 1000 }));
    assert.deepEqual(issues.map((i) => [i.node, i.field, i.code, i.expected]), [['sample', 'params.steps', 'param_range', 'at most 999']]);
  });

  it('accepts and runs what fits: 64×64 batch 2', async () => {
    const ws = await WsClient.connect(server.url, '?client_id=fits');
    try {
      const post = await api<{ run_id: string }>(server.url, '/api/runs', { body: { graph: demo({ width: 64, height: 64, batch: 2 }), client_id: 'fits' } });
      assert.equal(post.status, 202, JSON.stringify(post.body));
      assert.equal((await ws.waitFor(isTerminal(post.body.run_id), 60_000)).type, 'done');
    } finally {
      await ws.close();
    }
  });
});
