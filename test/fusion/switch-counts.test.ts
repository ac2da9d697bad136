/**
 * UNet cost of the two MagicFusion arrangements at the paper's 100 DDIM steps (docs/magicfusion-snb.md §2, App. B):
 * the executor evaluates a NOISE branch only at steps where a switch takes it, so OTHER runs only inside the SNB
 * window. Counts come from RunResult.unetCalls (keys `<abs dir>|<provider>`); the steps at which each model ran
 * come from the models' call counters read at every progress event.
 *
 * The original code evaluates both models at every step, fused or not (§1.2, §1.5): per model and step one UNet
 * call on a batch of 2B rows (uncond + cond), i.e. 2 UNet evaluations, 200 per model over 100 steps. The executor
 * batches the same way (one call = 2 evaluations), so the counts compare directly.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import type { Graph } from '../../nodes/graph-format.js';
import type { ExecutionEvent, RunResult } from '../../server/engine/events.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import { findRepoRoot, writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { snbGraph } from '../helpers/graphs.js';

const STEPS = 100;
/** DDIM t for 100 steps: 991, 981, …, 1. */
const GRID = Array.from({ length: STEPS }, (_, i) => 991 - 10 * i);

let tmp: string;
let modelsRoot: string;
let models: ModelManager;
let general: SdModel;
let cartoon: SdModel;

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-switch-counts-'));
  modelsRoot = path.join(tmp, 'models');
  await writeTinyModel(path.join(modelsRoot, 'general'), { seed: 7 });
  await writeTinyModel(path.join(modelsRoot, 'cartoon'), { seed: 8 });
  models = new ModelManager({ threads: 1 });
  // The same SdModel objects the runs' LoadModel nodes get (same folder and provider), to read their call counters.
  general = await models.acquire(path.join(modelsRoot, 'general'), 'cpu');
  cartoon = await models.acquire(path.join(modelsRoot, 'cartoon'), 'cpu');
});

after(async () => {
  if (general) models.release(general);
  if (cartoon) models.release(cartoon);
  await models?.dispose();
  await rm(tmp, { recursive: true, force: true });
});

const key = (name: string): string => `${path.join(modelsRoot, name)}|cpu`;

/** Per DDIMStep node: the timesteps at which each model's UNet ran. */
type StepLog = Map<string, { t: number[]; general: number[]; cartoon: number[] }>;

async function run(graph: Graph, name: string): Promise<{ result: RunResult; log: StepLog; ms: number }> {
  const log: StepLog = new Map();
  let last = { general: general.unetCalls, cartoon: cartoon.unetCalls };
  const onEvent = (e: ExecutionEvent): void => {
    if (e.type !== 'progress') return;
    // A loop's UNet calls for step t all happen before its progress event, and nodes run one at a time.
    const entry = log.get(e.node) ?? { t: [], general: [], cartoon: [] };
    log.set(e.node, entry);
    entry.t.push(e.t);
    for (const [m, name] of [[general, 'general'], [cartoon, 'cartoon']] as const) {
      const delta = m.unetCalls - last[name];
      assert.ok(delta === 0 || delta === 1, `${e.node} t=${e.t}: ${name} ran ${delta} times in one step`);
      if (delta) entry[name].push(e.t);
    }
    last = { general: general.unetCalls, cartoon: cartoon.unetCalls };
  };
  const t0 = performance.now();
  const result = await executeGraph(graph, {
    roots: { models: modelsRoot, input: path.join(tmp, 'input'), output: path.join(tmp, 'output', name) },
    models,
    onEvent,
  });
  return { result, log, ms: performance.now() - t0 };
}

/** SNB of BASE and OTHER inside a SwitchAtTimestep, as the bundled graphs wire it, with one DDIMStep loop (32×32 latent). */
function fusionGraph(base: string, other: string, mode: 1 | 2, threshold: number): Graph {
  const prompt = 'A bee is making honey';
  return snbGraph({ base, other, promptBase: prompt, promptOther: prompt, seed: 6854, size: 256, mode, switchT: threshold, steps: STEPS });
}

/**
 * Original-code cost of a 100-step fused run vs this run's fused loop. The original evaluates 4 UNets per step
 * (§1.2: u_O, c_O, u_B, c_B), i.e. per model 2 evaluations per step, batched as one call of 2B rows, at every step.
 * FuseGraph's PredictNoise batches the same way (BASE makes exactly one call per step, not two), so 1 call = 2
 * evaluations on both sides.
 */
function cost(calls: { base: number; other: number }): { perModelOriginal: number; savedEvaluations: number; savedPercent: number; line: string } {
  const perModelOriginal = 2 * STEPS; // evaluations per model
  const original = 2 * perModelOriginal;
  const now = 2 * (calls.base + calls.other);
  const saved = original - now;
  const percent = (100 * saved) / original;
  return {
    perModelOriginal,
    savedEvaluations: saved,
    savedPercent: percent,
    line:
      `original: ${perModelOriginal} + ${perModelOriginal} UNet evaluations (${STEPS} + ${STEPS} batched calls); ` +
      `FuseGraph: ${2 * calls.base} + ${2 * calls.other} (${calls.base} + ${calls.other} calls); saved ${saved} evaluations (${percent.toFixed(1)}%)`,
  };
}

describe('100 DDIM steps: UNet calls per model follow the fusion window', () => {
  test('cross-domain arrangement (mode 2, t = 600): SNB at exactly the 40 steps t = 991…601', async (t) => {
    const { result, log, ms } = await run(fusionGraph('general', 'cartoon', 2, 600), 'cross-domain');
    assert.deepEqual(result.unetCalls, { [key('general')]: 100, [key('cartoon')]: 40 });
    const steps = log.get('ddim')!;
    assert.deepEqual(steps.t, GRID);
    assert.deepEqual(steps.general, GRID);
    assert.deepEqual(steps.cartoon, GRID.filter((x) => x > 600));
    assert.equal(steps.cartoon.at(0), 991);
    assert.equal(steps.cartoon.at(-1), 601);
    const c = cost({ base: 100, other: 40 });
    assert.equal(c.perModelOriginal, 200);
    assert.equal(c.savedEvaluations, 120);
    assert.equal(c.savedPercent, 30);
    t.diagnostic(`${c.line}; run ${ms.toFixed(0)} ms`);
  });

  test('expert-first arrangement (mode 1, t = 850, base = cartoon): cartoon alone for the 15 steps t = 991…851', async (t) => {
    const { result, log, ms } = await run(fusionGraph('cartoon', 'general', 1, 850), 'expert-first');
    assert.deepEqual(result.unetCalls, { [key('cartoon')]: 100, [key('general')]: 85 });
    const steps = log.get('ddim')!;
    assert.deepEqual(steps.cartoon, GRID);
    assert.deepEqual(steps.general, GRID.filter((x) => x <= 850));
    assert.equal(GRID.length - steps.general.length, 15);
    assert.equal(steps.general.at(0), 841);
    const c = cost({ base: 100, other: 85 });
    assert.equal(c.perModelOriginal, 200);
    assert.equal(c.savedEvaluations, 30);
    assert.equal(c.savedPercent, 7.5);
    t.diagnostic(`${c.line}; run ${ms.toFixed(0)} ms`);
  });
});

describe('bundled graphs on tiny models (100 steps, 64×64 images)', () => {
  const MODEL_FOR: Readonly<Record<string, string>> = { 'sd-v1-4': 'general', 'anything-v3': 'cartoon' };

  async function loadBundled(file: string): Promise<Graph> {
    const graph = JSON.parse(await readFile(path.join(findRepoRoot(), 'graphs', file), 'utf8')) as Graph;
    let loads = 0;
    let latents = 0;
    for (const node of Object.values(graph.nodes)) {
      if (node.type === 'LoadModel') {
        const original = String(node.params?.['path']);
        assert.ok(original in MODEL_FOR, `unexpected model path ${original}`);
        // Same provider as the counters read here; 'auto' could pick a GPU provider on another machine.
        node.params = { ...node.params, path: MODEL_FOR[original]!, provider: 'cpu' };
        loads++;
      }
      if (node.type === 'NoiseLatent') {
        node.params = { ...node.params, width: 64, height: 64 };
        latents++;
      }
      if (node.type === 'DDIMStep') assert.equal(node.params?.['steps'], STEPS, 'the bundled graph keeps 100 steps');
    }
    assert.equal(loads, 2);
    assert.equal(latents, 1);
    return graph;
  }

  async function pngSizes(result: RunResult): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const f of result.outputs.filter((o) => o.kind === 'image')) {
      const png = await readFile(f.path);
      assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
      out[f.name] = `${png.readUInt32BE(16)}x${png.readUInt32BE(20)}`;
    }
    return out;
  }

  test('graphs/magicfusion-cross-domain.json: general 200 calls (alone 100 + fused 100), cartoon 140 (alone 100 + fused 40)', async (t) => {
    const { result, log, ms } = await run(await loadBundled('magicfusion-cross-domain.json'), 'bundled-cross-domain');
    assert.deepEqual(result.unetCalls, { [key('general')]: 200, [key('cartoon')]: 140 });
    assert.deepEqual(log.get('sample_fused')?.general, GRID);
    assert.deepEqual(log.get('sample_fused')?.cartoon, GRID.filter((x) => x > 600));
    assert.deepEqual(log.get('sample_base')?.cartoon, []);
    assert.deepEqual(log.get('sample_other')?.general, []);
    assert.deepEqual(await pngSizes(result), { 'general_00001.png': '64x64', 'expert_00001.png': '64x64', 'fused_00001.png': '64x64' });
    t.diagnostic(`fused loop: ${cost({ base: 100, other: 40 }).line}; whole graph ${ms.toFixed(0)} ms`);
  });

  test('graphs/magicfusion-expert-first.json: cartoon 200 calls (alone 100 + fused 100), general 185 (alone 100 + fused 85)', async (t) => {
    const { result, log, ms } = await run(await loadBundled('magicfusion-expert-first.json'), 'bundled-expert-first');
    assert.deepEqual(result.unetCalls, { [key('cartoon')]: 200, [key('general')]: 185 });
    assert.deepEqual(log.get('sample_fused')?.cartoon, GRID);
    assert.deepEqual(log.get('sample_fused')?.general, GRID.filter((x) => x <= 850));
    assert.deepEqual(await pngSizes(result), { 'cartoon_00001.png': '64x64', 'general_00001.png': '64x64', 'fused_00001.png': '64x64' });
    t.diagnostic(`fused loop: ${cost({ base: 100, other: 85 }).line}; whole graph ${ms.toFixed(0)} ms`);
  });
});
