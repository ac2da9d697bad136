// Issue 7's acceptance test: graphs/demo-fusion.json on the trained demo models (models/demo/general and
// models/demo/cartoon, made by tools/demo-models on a device session), measured with tools/demo-models/measure.ts.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { checkExport, defaultCheckFile } from '../../tools/demo-models/check-export.js';
import type { ShapeMeasure } from '../../tools/demo-models/measure.js';
import { measureShape } from '../../tools/demo-models/measure.js';
import { REPO_ROOT, bundledGraph } from '../helpers/graphs.js';

const MODELS_ROOT = path.join(REPO_ROOT, 'models');
const GENERAL = path.join(MODELS_ROOT, 'demo', 'general');
const CARTOON = path.join(MODELS_ROOT, 'demo', 'cartoon');
const READY = [GENERAL, CARTOON].every((dir) => existsSync(path.join(dir, 'unet', 'model.onnx')));
const SKIP = READY
  ? false
  : 'models/demo/general and models/demo/cartoon are missing (they are committed; tools/demo-models/README.md remakes them)';

/** Seeds the graph runs with; DEMO_SEEDS=8 for the table in the issue note. */
const SEEDS = Array.from({ length: Number(process.env.DEMO_SEEDS ?? 4) }, (_, i) => i);
/** Each condition must hold for at least this share of the seeds. */
const MIN_SHARE = 0.75;

/** Thresholds of the conditions (see measure.ts for the quantities). */
const LEFT_MAX_X = 0.4;
const CENTRE_RADIUS = 0.15;
/** General-model style: a textured background (the cartoon model's is flat: ~0) and no dark outline. */
const PHOTO_MIN_ROUGHNESS = 0.012;
const PHOTO_MAX_OUTLINE = 0.4;

interface SeedResult {
  seed: number;
  general: ShapeMeasure;
  cartoon: ShapeMeasure;
  fused: ShapeMeasure;
}

const conditions: { name: string; holds: (r: SeedResult) => boolean }[] = [
  {
    name: 'general alone puts the red shape on the left',
    holds: ({ general: m }) => m.found && m.centroid!.x < LEFT_MAX_X,
  },
  { name: 'general alone does not draw a star', holds: ({ general: m }) => m.found && !m.starLike },
  { name: 'cartoon alone draws a star', holds: ({ cartoon: m }) => m.starLike },
  {
    name: 'cartoon alone draws it near the centre',
    holds: ({ cartoon: m }) => m.found && Math.hypot(m.centroid!.x - 0.5, m.centroid!.y - 0.5) < CENTRE_RADIUS,
  },
  { name: 'the fused image has a star-shaped red object', holds: ({ fused: m }) => m.starLike },
  {
    name: "the fused image is in the general model's style",
    holds: ({ fused: m }) => m.backgroundRoughness >= PHOTO_MIN_ROUGHNESS && m.outlineContrast < PHOTO_MAX_OUTLINE,
  },
];

function row(name: string, m: ShapeMeasure): string {
  const c = m.centroid ? `(${m.centroid.x.toFixed(2)}, ${m.centroid.y.toFixed(2)})` : '—';
  return (
    `${name.padEnd(8)} centroid ${c.padEnd(12)} area ${m.area.toFixed(3)} solidity ${m.solidity?.toFixed(2) ?? '—'} ` +
    `points ${m.points} star ${m.starLike ? 'yes' : 'no '} roughness ${m.backgroundRoughness.toFixed(3)} ` +
    `outline ${m.outlineContrast.toFixed(2)}`
  );
}

/** UNet calls of one run of each demo graph (all three branches), for the fast template's budget. */
const callsOf = new Map<string, number>();

for (const graphName of ['demo-fusion', 'demo-fusion-fast']) describe(`${graphName} on the demo models`, { skip: SKIP }, () => {
  let models: ModelManager;
  let out: string;
  const results: SeedResult[] = [];

  before(async () => {
    models = new ModelManager();
    out = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-demo-'));
  });
  after(async () => {
    await models.dispose();
    await rm(out, { recursive: true, force: true });
  });

  it(`graphs/${graphName}.json loads the demo models`, () => {
    const g = bundledGraph(graphName);
    assert.equal(g.nodes.base_model!.params!.path, 'demo/general');
    assert.equal(g.nodes.other_model!.params!.path, 'demo/cartoon');
  });

  for (const dir of [GENERAL, CARTOON]) {
    it(`${path.basename(dir)}: the engine's tokenizer and ONNX outputs match the training program`, { skip: !existsSync(defaultCheckFile(dir)) && 'no export check file' }, async () => {
      const r = await checkExport(dir);
      assert.deepEqual(r.tokenizerMismatches, []);
      assert.ok(r.ok, JSON.stringify(r));
    });
  }

  it(`runs for seeds ${SEEDS.join(', ')} and measures the three images`, async (t) => {
    for (const seed of SEEDS) {
      const g: Graph = bundledGraph(graphName);
      g.nodes.noise!.params = { ...g.nodes.noise!.params, seed };
      const result = await executeGraph(g, { roots: { models: MODELS_ROOT, input: out, output: out }, models });
      callsOf.set(graphName, Object.values(result.unetCalls).reduce((a, b) => a + b, 0));
      const image = async (node: string): Promise<ShapeMeasure> => {
        const file = result.outputs.find((o) => o.node === node && o.kind === 'image');
        assert.ok(file, `no image from ${node}`);
        return measureShape(await readFile(file.path), 'red');
      };
      const r = { seed, general: await image('save_general'), cartoon: await image('save_expert'), fused: await image('save_fused') };
      results.push(r);
      for (const [name, m] of [['general', r.general], ['cartoon', r.cartoon], ['fused', r.fused]] as const) {
        t.diagnostic(`seed ${seed} ${row(name, m)}`);
      }
    }
  });

  if (graphName === 'demo-fusion-fast') {
    // Issue 17: DDIM-50 quality (the conditions below) with at most 40 % of the DDIM-50 graph's UNet calls.
    it('needs at most 40 % of the UNet calls of the 50-step DDIM graph', () => {
      const fast = callsOf.get('demo-fusion-fast');
      const ddim50 = callsOf.get('demo-fusion');
      assert.ok(fast !== undefined && ddim50 !== undefined, 'both graphs ran');
      assert.ok(fast <= 0.4 * ddim50, `${fast} UNet calls vs ${ddim50} for DDIM 50`);
    });
  }

  for (const c of conditions) {
    it(c.name, () => {
      assert.equal(results.length, SEEDS.length, 'the graph runs did not finish');
      const held = results.filter(c.holds).map((r) => r.seed);
      assert.ok(
        held.length >= Math.ceil(MIN_SHARE * SEEDS.length),
        `held for seeds [${held.join(', ')}] of [${SEEDS.join(', ')}]; needs ${Math.ceil(MIN_SHARE * SEEDS.length)}`,
      );
    });
  }
});
