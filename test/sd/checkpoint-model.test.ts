import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { executeGraph } from '../../server/execution/executor.js';
import { CheckpointCache } from '../../server/sd/checkpoint-cache.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { ModelSource } from '../../server/sd/model-source.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { REPO_ROOT } from '../helpers/graphs.js';
import { relL2 } from '../helpers/closeness.js';

/**
 * Checkpoint files loaded as a user loads them: LoadModel names the file, FuseGraph builds its ONNX folder into the
 * cache and runs it, and the results equal the PyTorch reference of tools/checkpoint-reference/make_fixtures.py.
 */
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');
const REFERENCE = path.join(FIXTURES, 'reference');

interface Case {
  name: string;
  inputs: Record<string, { file: string; shape: number[] } | unknown>;
  outputs: Record<string, { file: string; shape: number[] }>;
}
const manifest = JSON.parse(await readFile(path.join(REFERENCE, 'manifest.json'), 'utf8')) as { cases: Case[] };
const byName = (name: string): Case => manifest.cases.find((c) => c.name === name)!;
const npy = async (file: string) => decodeNpy(await readFile(path.join(REFERENCE, file)));

/** Asserts `got` within relative L2 `tol` of the reference and reports the measured distance. */
function close(t: { diagnostic(m: string): void }, what: string, got: Float32Array, want: Float32Array, tol: number): void {
  const d = relL2(got, want);
  t.diagnostic(`${what}: relative L2 ${d.toExponential(2)} (tolerance ${tol})`);
  assert.ok(d < tol, `${what}: relative L2 ${d} ≥ ${tol}`);
}

let root: string;
let models: string;
let cache: CheckpointCache;
let manager: ModelManager;
const built: string[] = [];

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-ckpt-'));
  models = path.join(root, 'models');
  await mkdir(path.join(models, 'checkpoints'), { recursive: true });
  for (const f of ['tiny-sd1.ckpt', 'tiny-sd2.safetensors', 'tiny-vae.safetensors']) await copyFile(path.join(FIXTURES, f), path.join(models, 'checkpoints', f));
  cache = new CheckpointCache({ dir: path.join(root, 'data', 'checkpoints'), maxBytes: 2 ** 40, log: (m) => built.push(m) });
  manager = new ModelManager({ checkpoints: cache, isolation: 'thread' });
});
after(async () => {
  await manager.dispose();
  await rm(root, { recursive: true, force: true });
});

const source = (file: string, opts: Partial<ModelSource> = {}): ModelSource => ({
  path: path.join(models, 'checkpoints', file), kind: 'checkpoint', ema: false, vae: null, prediction: 'auto', loras: [], ...opts,
});

describe('a checkpoint file loads as a model', () => {
  test('tiny-sd1.ckpt: text encoder, UNet and VAE equal the PyTorch reference; two loads build once', async (t) => {
    const [m, again] = await Promise.all([manager.acquire(source('tiny-sd1.ckpt'), 'cpu'), manager.acquire(source('tiny-sd1.ckpt'), 'cpu')]);
    assert.equal(m, again);
    assert.equal(built.length, 1, built.join('\n'));
    assert.equal(m.prediction, 'epsilon');

    const text = byName('sd1-text');
    const ids = text.inputs['input_ids'] as number[][];
    const enc = await m.encodeText(ids);
    const want = await npy(text.outputs['last_hidden_state']!.file);
    assert.deepEqual([...enc.shape], want.shape);
    close(t, 'text encoder', enc.data, want.data, 1e-5);

    const unet = byName('sd1-unet-t500');
    const sample = await npy((unet.inputs['sample'] as { file: string }).file);
    const context = await npy((unet.inputs['context'] as { file: string }).file);
    const out = await m.predict({ data: sample.data, shape: sample.shape }, Number(unet.inputs['timestep']), { data: context.data, shape: context.shape });
    const wantUnet = await npy(unet.outputs['out']!.file);
    close(t, 'UNet', out, wantUnet.data, 1e-5);

    const vae = byName('sd1-vae-decode');
    const z = await npy((vae.inputs['latent'] as { file: string }).file);
    // SdModel.decode divides by the scaling factor, as the samplers' latents are scaled; the reference decodes z itself.
    const img = await m.decode({ data: z.data.map((v) => v * m.info.scalingFactor), shape: z.shape });
    const wantImg = await npy(vae.outputs['image']!.file);
    close(t, 'VAE decode', img.data, wantImg.data, 1e-5);
    manager.release(m);
    manager.release(again);
  });

  test('ema: true loads the model_ema.* UNet', async (t) => {
    const m = await manager.acquire(source('tiny-sd1.ckpt', { ema: true }), 'cpu');
    const unet = byName('sd1-ema-unet-t500');
    const sample = await npy((unet.inputs['sample'] as { file: string }).file);
    const context = await npy((unet.inputs['context'] as { file: string }).file);
    const out = await m.predict({ data: sample.data, shape: sample.shape }, Number(unet.inputs['timestep']), { data: context.data, shape: context.shape });
    close(t, 'EMA UNet', out, (await npy(unet.outputs['out']!.file)).data, 1e-5);
    manager.release(m);
  });

  test('tiny-sd2.safetensors (fp16, OpenCLIP, linear proj): prompts pad with id 0 and condition on the penultimate layer', async (t) => {
    const m = await manager.acquire(source('tiny-sd2.safetensors'), 'cpu');
    // The tensors decide v-prediction by ComfyUI's SD-2 rule (docs/models.md): the fixture's random biases pass it.
    assert.equal(m.prediction, 'v_prediction');
    assert.equal(m.tokenizer.padTokenId, 0);
    const text = byName('sd2-text');
    const ids = text.inputs['input_ids'] as number[][];
    assert.deepEqual(m.tokenizer.encodePadded('a red cat on the left'), ids[0]);
    const enc = await m.encodeText(ids);
    close(t, 'SD-2 text encoder (penultimate + ln_final)', enc.data, (await npy(text.outputs['penultimate']!.file)).data, 1e-5);
    const unet = byName('sd2-unet-t500');
    const sample = await npy((unet.inputs['sample'] as { file: string }).file);
    const context = await npy((unet.inputs['context'] as { file: string }).file);
    const out = await m.predict({ data: sample.data, shape: sample.shape }, Number(unet.inputs['timestep']), { data: context.data, shape: context.shape });
    close(t, 'SD-2 UNet', out, (await npy(unet.outputs['out']!.file)).data, 1e-5);
    manager.release(m);
  });

  test('cache: listed with its source, cleared on request; a failed build leaves nothing behind', async () => {
    const entries = await cache.list();
    assert.ok(entries.some((e) => e.manifest?.source === 'tiny-sd1.ckpt' && e.manifest.ema === false));
    const corrupt = path.join(models, 'checkpoints', 'corrupt.safetensors');
    await writeFile(corrupt, Buffer.from('not a checkpoint at all'));
    await assert.rejects(manager.acquire(source('corrupt.safetensors'), 'cpu'), /corrupt\.safetensors/);
    assert.deepEqual((await readdir(cache.dir)).filter((n) => n.startsWith('.building-')), []);
  });
});

describe('a 10-step DDIM run of a checkpoint', () => {
  test('LoadModel with a .ckpt path gives the reference x_0', async (t) => {
    const ddim = byName('sd1-ddim-10');
    const input = path.join(root, 'input');
    await mkdir(input, { recursive: true });
    await copyFile(path.join(REFERENCE, (ddim.inputs['x_T'] as { file: string }).file), path.join(input, 'x_T.npy'));
    const link = (node: string, output: string) => ({ node, output });
    const graph = {
      format: 'fusegraph', version: 2,
      nodes: {
        model: { type: 'LoadModel', params: { path: 'checkpoints/tiny-sd1.ckpt', provider: 'cpu' } },
        // The reference's token ids: [BOS, a, red, cat, on, the, left, EOS, pad…].
        pos: { type: 'EncodePrompt', params: { text: 'a red cat on the left' }, inputs: { model: link('model', 'model') } },
        neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
        x: { type: 'LoadLatent', params: { path: 'x_T.npy' } },
        eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
        sample: { type: 'DDIMStep', params: { steps: 10, eta: 0 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('x', 'latent') } },
        save: { type: 'SaveLatent', params: { filename: 'x0.npy' }, inputs: { latent: link('sample', 'latent') } },
      },
    };
    const result = await executeGraph(graph, { roots: { models, input, output: path.join(root, 'output') }, models: manager });
    const x0 = decodeNpy(await readFile(result.outputs[0]!.path));
    const want = await npy(ddim.outputs['x_0']!.file);
    close(t, '10-step DDIM x_0', x0.data, want.data, 1e-4);
  });
});
