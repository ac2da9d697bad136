/**
 * v- and x0-predicting models are sampled in ε (PredictNoise converts, server/sampler/prediction.ts), so fusion blends
 * like with like. Checked against an independent reference: diffusers' own `v_prediction` branch of each scheduler
 * (ported and tested against diffusers' values in test/schedulers/), stepping the UNet's raw v output.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import { toEpsilon } from '../../server/sampler/prediction.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { createSampler } from '../../server/sd/schedulers/index.js';
import { snbGraph } from '../helpers/graphs.js';
import type { TinyWorkspace } from '../helpers/tiny-models.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';

const link = (node: string, output: string): { node: string; output: string } => ({ node, output });

test('toEpsilon inverts x_t = √ᾱ·x0 + √(1−ᾱ)·ε for v and x0 predictions, on every row of a CFG batch', () => {
  const n = 64;
  for (const a of [0.9991, 0.5, 0.0047]) {
    const x0 = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.3));
    const eps = Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.7) * 1.5);
    const xt = x0.map((v, i) => Math.sqrt(a) * v + Math.sqrt(1 - a) * eps[i]!);
    const v = x0.map((x0i, i) => Math.sqrt(a) * eps[i]! - Math.sqrt(1 - a) * x0i);
    const twoRows = new Float32Array(2 * n);
    twoRows.set(v, 0);
    twoRows.set(v, n);
    toEpsilon(twoRows, xt, a, 'v_prediction');
    for (let i = 0; i < 2 * n; i++) assert.ok(Math.abs(twoRows[i]! - eps[i % n]!) < 1e-5, `v, ᾱ ${a}, value ${i}`);
    const fromX0 = Float32Array.from(x0);
    toEpsilon(fromX0, xt, a, 'sample');
    // x0 → ε divides by √(1−ᾱ): near t = 0 float32 rounding grows by 1/√(1−ᾱ).
    for (let i = 0; i < n; i++) assert.ok(Math.abs(fromX0[i]! - eps[i]!) < 1e-5 / Math.sqrt(1 - a), `x0, ᾱ ${a}, value ${i}`);
    const same = Float32Array.from(eps);
    toEpsilon(same, xt, a, 'epsilon');
    assert.deepEqual(same, eps);
  }
});

describe('a v-prediction model', () => {
  let ws: TinyWorkspace;
  let models: ModelManager;
  const scheduler = { _class_name: 'DDIMScheduler', prediction_type: 'v_prediction' };
  before(async () => {
    ws = await tinyWorkspace({ vmodel: { seed: 4, schedulerConfig: scheduler }, emodel: { seed: 5 } });
    models = new ModelManager();
  });
  after(async () => {
    await models.dispose();
    await ws.cleanup();
  });

  function graph(sampler: 'ddim' | 'euler' | 'dpmpp_2m', steps: number): Graph {
    return {
      format: 'fusegraph', version: 2,
      nodes: {
        model: { type: 'LoadModel', params: { path: 'vmodel', provider: 'cpu' } },
        pos: { type: 'EncodePrompt', params: { text: 'a red circle' }, inputs: { model: link('model', 'model') } },
        neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
        noise: { type: 'NoiseLatent', params: { seed: 3, width: 64, height: 64, batch: 1 }, inputs: { model: link('model', 'model') } },
        eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
        sample: { type: 'Sampler', params: { sampler, steps, schedule: 'default', seed: 5 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } },
        save_x: { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: link('sample', 'latent') } },
        save_xt: { type: 'SaveLatent', params: { filename: 'xT.npy' }, inputs: { latent: link('noise', 'latent') } },
      },
    };
  }

  /** The scheduler in diffusers' v mode on the UNet's raw output: what sampling a v-model means. */
  async function vReference(sampler: 'ddim' | 'euler' | 'dpmpp_2m', steps: number, xT: Float32Array): Promise<Float32Array> {
    const model = await models.acquire(path.join(ws.models, 'vmodel'), 'cpu');
    assert.equal(model.prediction, 'v_prediction');
    const [neg, pos] = await Promise.all([model.encodeText([model.tokenizer.encodePadded('')]), model.encodeText([model.tokenizer.encodePadded('a red circle')])]);
    const context = new Float32Array(neg.data.length * 2);
    context.set(neg.data, 0);
    context.set(pos.data, neg.data.length);
    const config = JSON.parse(await readFile(path.join(ws.models, 'vmodel', 'scheduler', 'scheduler_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(config['prediction_type'], 'v_prediction');
    const r = createSampler(config, { sampler, schedule: 'default', steps });
    const x = xT.map((v) => v * r.initNoiseSigma);
    const input = new Float32Array(x.length);
    for (let i = 0; i < r.timesteps.length; i++) {
      r.modelInput(input, x, i);
      const batch = new Float32Array(2 * x.length);
      batch.set(input, 0);
      batch.set(input, x.length);
      const out = await model.predict({ data: batch, shape: [2, 4, 8, 8] }, r.timesteps[i]!, { data: context, shape: [2, neg.shape[1]!, neg.shape[2]!] });
      const v = new Float32Array(x.length);
      for (let j = 0; j < x.length; j++) v[j] = out[j]! + 7.5 * (out[x.length + j]! - out[j]!);
      r.step(x, v, i);
    }
    models.release(model);
    return x;
  }

  for (const [sampler, steps] of [['ddim', 6], ['euler', 5], ['dpmpp_2m', 5]] as const) {
    test(`${sampler}: sampling in ε equals diffusers' v_prediction branch (relative L2 < 1e-5)`, async () => {
      const out = path.join(ws.output, `v-${sampler}`);
      await executeGraph(graph(sampler, steps), { roots: { models: ws.models, input: ws.input, output: out }, models });
      const x = decodeNpy(await readFile(path.join(out, 'x.npy'))).data;
      const xT = decodeNpy(await readFile(path.join(out, 'xT.npy'))).data;
      const want = await vReference(sampler, steps, xT);
      let num = 0;
      let den = 0;
      for (let i = 0; i < x.length; i++) {
        num += (x[i]! - want[i]!) ** 2;
        den += want[i]! ** 2;
      }
      const d = Math.sqrt(num / den);
      assert.ok(d < 1e-5, `relative L2 ${d}`);
    });
  }

  test('fused with an ε-model, the blend sees ε: it differs from blending the raw v output', async () => {
    // The same SNB graph with the v-model declared ε (LoadModel.prediction) blends v with ε, the old behaviour.
    const g = snbGraph({ base: 'emodel', other: 'vmodel', promptBase: 'a lion', promptOther: 'a lion', seed: 7, size: 64, mode: 2, switchT: 500, steps: 4 });
    const run = async (name: string, graph: Graph): Promise<Float32Array> => {
      const out = path.join(ws.output, name);
      await executeGraph(graph, { roots: { models: ws.models, input: ws.input, output: out }, models });
      return decodeNpy(await readFile(path.join(out, 'x.npy'))).data;
    };
    const converted = await run('fused-eps', g);
    const other = Object.values(g.nodes).find((n) => n.type === 'LoadModel' && n.params?.['path'] === 'vmodel')!;
    other.params = { ...other.params, prediction: 'epsilon' };
    const raw = await run('fused-raw', g);
    assert.ok(converted.every(Number.isFinite));
    assert.notDeepEqual(converted, raw);
  });
});
