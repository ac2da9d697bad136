/**
 * LoadLoRA as a user runs it: a graph naming a checkpoint and a chain of LoRAs loads a model whose UNet call equals the
 * PyTorch merged model (tools/checkpoint-reference/make_lora_fixtures.py), a strength change rebuilds only the tensors
 * the LoRA changes, and validation refuses a LoRA on an ONNX folder, a missing one and a LoHa file, naming the field.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Graph } from '../../nodes/graph-format.js';
import { GraphValidationError } from '../../server/engine/errors.js';
import { executeGraph } from '../../server/execution/executor.js';
import { CheckpointCache } from '../../server/sd/checkpoint-cache.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { REPO_ROOT, TOKENIZER_FIXTURE } from '../helpers/graphs.js';
import { relL2 } from '../helpers/closeness.js';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');
const LORA_REF = path.join(FIXTURES, 'lora', 'reference');
interface UnetCase { name: string; stack: string[]; timestep: number; sample: { file: string }; context: { file: string }; out: { file: string } }
const manifest = JSON.parse(await readFile(path.join(LORA_REF, 'manifest.json'), 'utf8')) as { strength_model: number; strength_clip: number; unet: UnetCase[] };
const npy = async (file: string) => decodeNpy(await readFile(path.join(LORA_REF, file)));
const link = (node: string, output: string) => ({ node, output });

/** LoadModel → LoadLoRA… → one model output, as far as the model: the test calls the UNet itself. */
function graph(model: string, loras: { path: string; strength_model: number; strength_clip: number }[]): Graph {
  const nodes: Graph['nodes'] = { model: { type: 'LoadModel', params: { path: model, provider: 'cpu' } } };
  let last = 'model';
  loras.forEach((l, i) => {
    nodes[`lora${i}`] = { type: 'LoadLoRA', params: l, inputs: { model: link(last, 'model') } };
    last = `lora${i}`;
  });
  nodes.noise = { type: 'NoiseLatent', params: { seed: 1, width: 16, height: 16, batch: 1 }, inputs: { model: link(last, 'model') } };
  nodes.save = { type: 'SaveLatent', params: { filename: 'x.npy' }, inputs: { latent: link('noise', 'latent') } };
  return { format: 'fusegraph', version: 2, nodes };
}

describe('LoadLoRA', () => {
  let root: string;
  let manager: ModelManager;
  const logs: string[] = [];
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-lora-model-'));
    await mkdir(path.join(root, 'models', 'loras'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'tiny-sd1.ckpt'), path.join(root, 'models', 'tiny-sd1.ckpt'));
    for (const f of ['tiny-sd1-lora-kohya.safetensors', 'tiny-sd1-lora-peft.safetensors', 'tiny-lora-loha.safetensors']) {
      await copyFile(path.join(FIXTURES, 'lora', f), path.join(root, 'models', 'loras', f));
    }
    await writeTinyModel(path.join(root, 'models', 'folder'), { tokenizerDir: TOKENIZER_FIXTURE });
    manager = new ModelManager({ checkpoints: new CheckpointCache({ dir: path.join(root, 'data'), maxBytes: 2 ** 40, log: (m) => logs.push(m) }), isolation: 'thread' });
  });
  after(async () => {
    await manager.dispose();
    await rm(root, { recursive: true, force: true });
  });

  const warnings: string[] = [];
  /** Runs the graph and returns the model its last LoadLoRA produced (still loaded in the manager). */
  async function modelOf(g: Graph): Promise<SdModel> {
    const result = await executeGraph(g, {
      roots: { models: path.join(root, 'models'), input: root, output: path.join(root, 'out') }, models: manager,
      onEvent: (e) => {
        if (e.type === 'warning') warnings.push(`${e.node}: ${e.message}`);
      },
    });
    const key = result.models.at(-1)!.key;
    return (await manager.resident(key))!;
  }

  async function unetCall(m: SdModel, c: UnetCase): Promise<Float32Array> {
    const sample = await npy(c.sample.file);
    const context = await npy(c.context.file);
    return m.predict({ data: sample.data, shape: sample.shape }, c.timestep, { data: context.data, shape: context.shape });
  }

  test('a kohya LoRA, then kohya + PEFT chained: one UNet call equals the PyTorch merged model', async (t) => {
    const kohya = { path: 'loras/tiny-sd1-lora-kohya.safetensors', strength_model: manifest.strength_model, strength_clip: manifest.strength_clip };
    const peft = { path: 'loras/tiny-sd1-lora-peft.safetensors', strength_model: 1, strength_clip: 1 };
    for (const [name, loras] of [['unet-kohya-t999', [kohya]], ['unet-stack-t999', [kohya, peft]]] as const) {
      const c = manifest.unet.find((u) => u.name === name)!;
      const m = await modelOf(graph('tiny-sd1.ckpt', [...loras]));
      const d = relL2(await unetCall(m, c), (await npy(c.out.file)).data);
      t.diagnostic(`${name}: relative L2 ${d.toExponential(2)}`);
      assert.ok(d < 1e-5, `${name}: relative L2 ${d}`);
    }
  });

  test('a strength change rebuilds only what the LoRA changes: the new UNet weights file holds just those tensors', async () => {
    const builds = (await manager.listModels(path.join(root, 'models'))).length; // warm the listing path too
    assert.ok(builds > 0);
    const m = await modelOf(graph('tiny-sd1.ckpt', [{ path: 'loras/tiny-sd1-lora-kohya.safetensors', strength_model: 0.3, strength_clip: 0 }]));
    const unet = path.dirname(m.folder.parts.unet);
    const own = (await stat(path.join(unet, 'weights.pb'))).size;
    const base = (await stat(path.join(unet, 'base-weights.pb'))).size;
    assert.ok(own > 0 && own < base / 10, `patched UNet weights ${own} bytes against the base's ${base}`);
    assert.ok(logs.some((l) => /LoRA tiny-sd1-lora-kohya\.safetensors: \d+ of its modules have no weight/.test(l)), logs.join('\n'));
    // …and the node says so to the user: how many, and the first few.
    assert.ok(warnings.some((w) => /^lora0: 2 modules of tiny-sd1-lora-kohya\.safetensors have no weight in this model and are ignored \(first: lora_unet_down_blocks_5/.test(w)), warnings.join('\n'));
  });

  test('validation refuses a LoRA on an ONNX folder, a missing LoRA and a LoHa file, naming node and field', async () => {
    const refused = async (g: Graph): Promise<{ node: string | null; field: string | null; code: string; message: string }[]> => {
      try {
        await executeGraph(g, { roots: { models: path.join(root, 'models'), input: root, output: path.join(root, 'out') }, models: manager });
      } catch (err) {
        assert.ok(err instanceof GraphValidationError, String(err));
        return err.issues.map((i) => ({ node: i.node, field: i.field, code: i.code, message: i.message }));
      }
      assert.fail('the graph ran');
    };
    const folder = await refused(graph('folder', [{ path: 'loras/tiny-sd1-lora-kohya.safetensors', strength_model: 1, strength_clip: 1 }]));
    assert.deepEqual(folder.map((i) => [i.node, i.field, i.code]), [['lora0', 'inputs.model', 'model_unsupported']]);
    const missing = await refused(graph('tiny-sd1.ckpt', [{ path: 'loras/nope.safetensors', strength_model: 1, strength_clip: 1 }]));
    assert.deepEqual(missing.map((i) => [i.node, i.field, i.code]), [['lora0', 'params.path', 'model_unavailable']]);
    const loha = await refused(graph('tiny-sd1.ckpt', [{ path: 'loras/tiny-lora-loha.safetensors', strength_model: 1, strength_clip: 1 }]));
    assert.equal(loha[0]?.field, 'params.path');
    assert.match(loha[0]!.message, /LoHa LoRAs are not supported yet/);
    const stringStrength = graph('tiny-sd1.ckpt', [{ path: 'loras/tiny-sd1-lora-kohya.safetensors', strength_model: 1, strength_clip: 1 }]);
    stringStrength.nodes.lora0!.params = { ...stringStrength.nodes.lora0!.params, strength_model: '0.5' };
    assert.deepEqual((await refused(stringStrength)).map((i) => [i.node, i.field, i.code]), [['lora0', 'params.strength_model', 'param_type']]);
  });

  test('GET /api/models lists LoRA files as loras, not as models', async () => {
    const listing = await manager.listModels(path.join(root, 'models'));
    assert.equal(listing.find((e) => e.path === 'loras/tiny-sd1-lora-kohya.safetensors')?.kind, 'lora');
    assert.equal(listing.find((e) => e.path === 'tiny-sd1.ckpt')?.kind, 'checkpoint');
  });
});
