import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { findRepoRoot } from '../tiny-models/make-tiny-model.js';

/** Wall time of graphs/demo-fusion.json (three images, 50 steps) with models loaded, best of `runs`. */
export async function benchDemoGraph(runs = 3): Promise<{ ms: number; unetCalls: number }> {
  const root = findRepoRoot();
  const graph = JSON.parse(readFileSync(path.join(root, 'graphs', 'demo-fusion.json'), 'utf8')) as Graph;
  const out = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-bench-demo-'));
  const models = new ModelManager();
  try {
    const roots = { models: path.join(root, 'models'), input: path.join(root, 'input'), output: out };
    await executeGraph(graph, { roots, models }); // loads the models
    let best = { ms: Infinity, unetCalls: 0 };
    for (let i = 0; i < runs; i++) {
      const r = await executeGraph(graph, { roots, models });
      if (r.ms < best.ms) best = { ms: r.ms, unetCalls: Object.values(r.unetCalls).reduce((a, b) => a + b, 0) };
    }
    return best;
  } finally {
    await models.dispose();
    await rm(out, { recursive: true, force: true });
  }
}
