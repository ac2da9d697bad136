/**
 * Measures the fused image of graphs/demo-fusion.json under different settings, over several seeds, with
 * measure.ts: how the table "fused schedule" in tools/demo-models/README.md was made, and how to choose the
 * settings again after retraining the demo models.
 *
 *   node --import tsx tools/demo-models/fusion-sweep.ts [--seeds 8] SETTINGS...
 *
 * Each SETTINGS is a JSON object of graph edits: "node": {params} overrides parameters, "node.input": "source"
 * rewires an input to another node's noise output. Examples:
 *   '{"schedule": {"t": 600}}'                                   SNB while t > 600, then the general model
 *   '{"schedule": {"t": 50}, "schedule.before": "eps_other"}'    the cartoon model alone while t > 50
 *   '{"schedule": {"t": 20}, "saliency_other": {"k": 5}}'
 */
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { findRepoRoot } from '../tiny-models/make-tiny-model.js';
import { measureShape } from './measure.js';

/** The graph without the general-alone and cartoon-alone branches: only the fused image is measured. */
const UNUSED = ['save_general', 'decode_general', 'sample_base', 'save_expert', 'decode_expert', 'sample_other', 'eps_other_alone', 'other_own_prompt', 'other_own_uncond'];

function edited(base: Graph, settings: Record<string, unknown>, seed: number): Graph {
  const g = structuredClone(base);
  for (const id of UNUSED) delete g.nodes[id];
  const node = (id: string): Graph['nodes'][string] => {
    const n = g.nodes[id];
    if (!n) throw new Error(`no node "${id}" in the demo graph`);
    return n;
  };
  node('noise').params = { ...node('noise').params, seed };
  for (const [key, value] of Object.entries(settings)) {
    const [id, input] = key.split('.') as [string, string | undefined];
    if (input) node(id).inputs = { ...node(id).inputs, [input]: { node: String(value), output: 'noise' } };
    else node(id).params = { ...node(id).params, ...(value as Record<string, unknown>) };
  }
  return g;
}

const { values, positionals } = parseArgs({ options: { seeds: { type: 'string', default: '8' } }, allowPositionals: true });
const seeds = Number(values.seeds);
const root = findRepoRoot();
const base = JSON.parse(await readFile(path.join(root, 'graphs', 'demo-fusion.json'), 'utf8')) as Graph;
const out = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-sweep-'));
const models = new ModelManager();
try {
  for (const arg of positionals.length ? positionals : ['{}']) {
    const settings = JSON.parse(arg) as Record<string, unknown>;
    let stars = 0;
    let roughness = 0;
    let outline = 0;
    const centroids: string[] = [];
    for (let seed = 0; seed < seeds; seed++) {
      const r = await executeGraph(edited(base, settings, seed), { roots: { models: path.join(root, 'models'), input: out, output: out }, models });
      const file = r.outputs.find((o) => o.node === 'save_fused' && o.kind === 'image');
      if (!file) throw new Error('the graph wrote no fused image');
      const m = await measureShape(await readFile(file.path), 'red');
      if (m.starLike) stars++;
      roughness += m.backgroundRoughness;
      outline += m.outlineContrast;
      centroids.push(m.centroid ? m.centroid.x.toFixed(2) : '—');
    }
    console.log(
      `${arg}: star-like ${stars}/${seeds}, background roughness ${(roughness / seeds).toFixed(3)}, ` +
        `outline contrast ${(outline / seeds).toFixed(2)}, centroid x ${centroids.join(' ')}`,
    );
  }
} finally {
  await models.dispose();
  await rm(out, { recursive: true, force: true });
}
