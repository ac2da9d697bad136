/**
 * The Sampler node on real tiny ONNX models: against a plain loop written here (diffusers' pipeline order: noise ·
 * init_noise_sigma, scale_model_input, one batched CFG UNet call, step), its UNet call counts, DDIM equality with
 * DDIMStep, fusion graphs with every sampler, and clear errors.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { SAMPLER_NAMES } from '../../nodes/index.js';
import type { SamplerName } from '../../nodes/index.js';
import { GraphValidationError } from '../../server/engine/errors.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { NumpyRandomState } from '../../server/sd/rng.js';
import { createSampler } from '../../server/sd/schedulers/index.js';
import { snbGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

const link = (node: string, output: string): { node: string; output: string } => ({ node, output });

function samplerGraph(model: string, sampler: string, steps: number, extra: Record<string, unknown> = {}): Graph {
  return {
    format: 'fusegraph',
    version: 2,
    nodes: {
      model: { type: 'LoadModel', params: { path: model, provider: 'cpu' } },
      pos: { type: 'EncodePrompt', params: { text: 'a red circle' }, inputs: { model: link('model', 'model') } },
      neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
      noise: { type: 'NoiseLatent', params: { seed: 3, width: 64, height: 64, batch: 1 }, inputs: { model: link('model', 'model') } },
      eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
      sample: {
        type: 'Sampler',
        params: { sampler, steps, schedule: 'default', seed: 5, ...extra },
        inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') },
      },
      save_x: { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: link('sample', 'latent') } },
      save_xt: { type: 'SaveLatent', params: { filename: 'xT.npy' }, inputs: { latent: link('noise', 'latent') } },
    },
  };
}

describe('Sampler node', () => {
  let ws: TinyWorkspace;
  let models: ModelManager;
  before(async () => {
    ws = await tinyWorkspace({
      general: { seed: 1 },
      cartoon: { seed: 2 },
      // int64 timesteps: a fractional t must reach the UNet truncated, as NumPy's astype in diffusers' ONNX pipeline.
      int64: { seed: 1, timestep: { type: 'int64', rank: 1, dim: 'batch' } },
    });
    models = new ModelManager();
  });
  after(async () => {
    await models.dispose();
    await ws.cleanup();
  });

  async function run(graph: Graph, name: string): Promise<{ x: Float32Array; xT: Float32Array; calls: Record<string, number> }> {
    const out = path.join(ws.output, name);
    const result = await executeGraph(graph, { roots: { models: ws.models, input: ws.input, output: out }, models });
    const read = async (f: string): Promise<Float32Array> => decodeNpy(await readFile(path.join(out, f))).data;
    return { x: await read('x.npy'), xT: await read('xT.npy'), calls: result.unetCalls };
  }

  /** The pipeline loop by hand on the same loaded model: what the node must reproduce bit for bit. */
  async function plainLoop(folder: string, sampler: SamplerName, steps: number, xT: Float32Array, seed: number): Promise<Float32Array> {
    const model = await models.acquire(path.join(ws.models, folder), 'cpu');
    const [neg, pos] = await Promise.all([model.encodeText([model.tokenizer.encodePadded('')]), model.encodeText([model.tokenizer.encodePadded('a red circle')])]);
    const context = new Float32Array(neg.data.length * 2);
    context.set(neg.data, 0);
    context.set(pos.data, neg.data.length);
    const ctxShape = [2, neg.shape[1]!, neg.shape[2]!];
    const r = createSampler(JSON.parse(await readFile(path.join(ws.models, folder, 'scheduler', 'scheduler_config.json'), 'utf8')), {
      sampler, schedule: 'default', steps,
    });
    const x = xT.map((v) => v * r.initNoiseSigma);
    const input = new Float32Array(x.length);
    const rng = new NumpyRandomState(seed);
    for (let i = 0; i < r.timesteps.length; i++) {
      r.modelInput(input, x, i);
      const batch = new Float32Array(2 * x.length);
      batch.set(input, 0);
      batch.set(input, x.length);
      const out = await model.predict({ data: batch, shape: [2, 4, 8, 8] }, r.timesteps[i]!, { data: context, shape: ctxShape });
      const eps = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) eps[j] = out[j]! + 7.5 * (out[x.length + j]! - out[j]!);
      const noise = r.stochastic ? Float32Array.from({ length: x.length }, () => rng.standardNormal()) : undefined;
      r.step(x, eps, i, noise);
    }
    return x;
  }

  for (const sampler of SAMPLER_NAMES) {
    test(`${sampler}: equals the plain pipeline loop bit for bit; UNet calls ${sampler === 'heun' ? '2N − 1' : 'N'}`, async () => {
      const steps = 5;
      const { x, xT, calls } = await run(samplerGraph('general', sampler, steps), `loop-${sampler}`);
      assert.deepEqual(Object.values(calls), [sampler === 'heun' ? 2 * steps - 1 : steps]);
      assert.ok(x.every(Number.isFinite));
      assert.deepEqual(x, await plainLoop('general', sampler, steps, xT, 5));
    });
  }

  test('ddim in the Sampler node is DDIMStep exactly (η = 0)', async () => {
    const viaSampler = await run(samplerGraph('general', 'ddim', 6), 'ddim-sampler');
    const g = samplerGraph('general', 'ddim', 6);
    g.nodes.sample = { type: 'DDIMStep', params: { steps: 6, eta: 0 }, inputs: g.nodes.sample!.inputs };
    assert.deepEqual(viaSampler.x, (await run(g, 'ddim-step')).x);
  });

  test('stochastic samplers depend on the seed; deterministic ones do not', async () => {
    for (const [sampler, stochastic] of [['euler_ancestral', true], ['dpmpp_2m_sde', true], ['euler', false]] as const) {
      const a = await run(samplerGraph('general', sampler, 4, { seed: 1 }), `seed-a-${sampler}`);
      const b = await run(samplerGraph('general', sampler, 4, { seed: 2 }), `seed-b-${sampler}`);
      if (stochastic) assert.notDeepEqual(a.x, b.x, sampler);
      else assert.deepEqual(a.x, b.x, sampler);
    }
  });

  test('a fractional timestep reaches an int64 UNet truncated (euler, 7 steps: 832.5 → 832)', async () => {
    const r = createSampler({}, { sampler: 'euler', schedule: 'default', steps: 7 });
    assert.ok(r.timesteps.some((t) => !Number.isInteger(t)));
    const { x, xT } = await run(samplerGraph('int64', 'euler', 7), 'int64');
    assert.deepEqual(x, await plainLoop('int64', 'euler', 7, xT, 0));
  });

  test('fusion (SNB + SwitchAtTimestep) runs with every sampler and schedule; the switch sees fractional t', async () => {
    for (const sampler of SAMPLER_NAMES) {
      for (const schedule of sampler === 'ddim' ? ['default'] : ['default', 'karras']) {
        const g = snbGraph({ base: 'general', other: 'cartoon', promptBase: 'a lion', promptOther: 'a lion', seed: 7, size: 64, mode: 2, switchT: 500, steps: 4 });
        g.nodes.ddim = { type: 'Sampler', params: { sampler, schedule, steps: 4, seed: 1 }, inputs: g.nodes.ddim!.inputs };
        const out = path.join(ws.output, `fusion-${sampler}-${schedule}`);
        const result = await executeGraph(g, { roots: { models: ws.models, input: ws.input, output: out }, models });
        const x = decodeNpy(await readFile(path.join(out, 'x.npy'))).data;
        assert.ok(x.every(Number.isFinite), `${sampler} ${schedule}`);
        const calls = sampler === 'heun' ? 7 : 4;
        const r = createSampler(JSON.parse(await readFile(path.join(ws.models, 'general', 'scheduler', 'scheduler_config.json'), 'utf8')), {
          sampler, schedule: schedule as 'default', steps: 4,
        });
        // The other model is called only while SNB is active: at the calls whose t > 500.
        const fused = Array.from(r.timesteps).filter((t) => t > 500).length;
        const byFolder = Object.fromEntries(result.models.map((m) => [path.basename(m.folder), result.unetCalls[m.key]]));
        assert.deepEqual(byFolder, { general: calls, cartoon: fused }, `${sampler} ${schedule}`);
      }
    }
  });

  test('errors name the node and field at admission, before anything runs: too many steps, a schedule ddim lacks', async () => {
    // DDIM's leading spacing + steps_offset 1 puts the first of 1000 steps at t = 1000.
    const refusedAt = (field: string, pattern: RegExp) => (e: unknown): boolean =>
      e instanceof GraphValidationError && e.issues.some((i) => i.node === 'sample' && i.field === field && pattern.test(i.message));
    await assert.rejects(
      executeGraph(samplerGraph('general', 'ddim', 1000, {}), { roots: { models: ws.models, input: ws.input, output: ws.output }, models }),
      refusedAt('params.steps', /timestep 1000/),
    );
    await assert.rejects(
      executeGraph(samplerGraph('general', 'ddim', 10, { schedule: 'karras' }), { roots: { models: ws.models, input: ws.input, output: ws.output }, models }),
      refusedAt('params.schedule', /ddim has no karras schedule/),
    );
  });
});
