/**
 * Checkpoint files from the command line, as a user runs them: `inspect`, `convert` (a folder any ONNX tool loads),
 * `validate` and `run` with a checkpoint path (built into the cache once, reused the next time), `cache ls|clear`,
 * and the refusals at validation (unsupported file, EMA asked for and absent, a VAE that is not there).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Graph } from '../../nodes/graph-format.js';
import { inspectModelFolder } from '../../server/sd/model-folder.js';
import { readPngText } from '../../server/sd/png-meta.js';
import { REPO_ROOT } from '../helpers/graphs.js';

const exec = promisify(execFile);
const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');

async function cli(args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [path.join(REPO_ROOT, 'bin', 'fusegraph.js'), ...args], { cwd, env: { ...process.env, FUSEGRAPH_NO_WEBGPU: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const link = (node: string, output: string) => ({ node, output });
function graph(loader: Record<string, unknown>): Graph {
  return {
    format: 'fusegraph', version: 2,
    nodes: {
      model: { type: 'LoadModel', params: { provider: 'cpu', ...loader } },
      pos: { type: 'EncodePrompt', params: { text: 'a red cat on the left' }, inputs: { model: link('model', 'model') } },
      neg: { type: 'EncodePrompt', params: { text: '' }, inputs: { model: link('model', 'model') } },
      noise: { type: 'NoiseLatent', params: { seed: 1, width: 16, height: 16, batch: 1 }, inputs: { model: link('model', 'model') } },
      eps: { type: 'PredictNoise', params: { guidance_scale: 7.5 }, inputs: { model: link('model', 'model'), positive: link('pos', 'cond'), negative: link('neg', 'cond') } },
      sample: { type: 'DDIMStep', params: { steps: 3, eta: 0 }, inputs: { model: link('model', 'model'), noise: link('eps', 'noise'), latent: link('noise', 'latent') } },
      decode: { type: 'Decode', inputs: { model: link('model', 'model'), latent: link('sample', 'latent') } },
      save: { type: 'SaveImage', params: { prefix: 'ckpt' }, inputs: { image: link('decode', 'image') } },
    },
  };
}

describe('checkpoints on the command line', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-ckpt-cli-'));
    await mkdir(path.join(root, 'models', 'checkpoints'), { recursive: true });
    for (const f of ['tiny-sd1.ckpt', 'tiny-sd2.safetensors', 'tiny-vae.safetensors', 'tiny-clip-multihead.safetensors']) {
      await copyFile(path.join(FIXTURES, f), path.join(root, 'models', 'checkpoints', f));
    }
  });
  after(() => rm(root, { recursive: true, force: true }));

  it('inspect says what a file is: family, layout, EMA, dtypes, tensors, prediction, and what is not a model', async () => {
    const sd1 = await cli(['inspect', 'models/checkpoints/tiny-sd1.ckpt'], root);
    assert.equal(sd1.code, 0, sd1.stderr);
    assert.match(sd1.stdout, /family:\s+SD-1\.x/);
    assert.match(sd1.stdout, /ldm/i);
    assert.match(sd1.stdout, /EMA[^\n]*(yes|true|present)/i);
    assert.match(sd1.stdout, /F16/);
    assert.match(sd1.stdout, /epsilon/);
    const sd2 = await cli(['inspect', 'models/checkpoints/tiny-sd2.safetensors'], root);
    assert.equal(sd2.code, 0, sd2.stderr);
    assert.match(sd2.stdout, /family:\s+SD-2\.x v-prediction/);
    assert.match(sd2.stdout, /v_prediction/);
    const vae = await cli(['inspect', 'models/checkpoints/tiny-vae.safetensors'], root);
    assert.match(vae.stdout, /VAE/);
    const bad = path.join(root, 'bad.ckpt');
    await writeFile(bad, 'PK\x03\x04 truncated');
    const refused = await cli(['inspect', bad], root);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /bad\.ckpt/);
  });

  it('convert writes a standard ONNX folder that loads as any folder does', async () => {
    const out = path.join(root, 'models', 'converted');
    const r = await cli(['convert', 'models/checkpoints/tiny-sd1.ckpt', '--out', out, '--ema'], root);
    assert.equal(r.code, 0, r.stderr);
    const folder = await inspectModelFolder(out);
    assert.deepEqual(Object.keys(folder.parts).sort(), ['textEncoder', 'unet', 'vaeDecoder']);
    const again = await cli(['convert', 'models/checkpoints/tiny-sd1.ckpt', '--out', out], root);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists/);
  });

  it('validate refuses what run would refuse, naming node and field: unsupported file, EMA absent, VAE missing', async () => {
    const write = async (name: string, g: Graph): Promise<string> => {
      const f = path.join(root, name);
      await writeFile(f, JSON.stringify(g));
      return f;
    };
    const ok = await cli(['validate', await write('ok.json', graph({ path: 'checkpoints/tiny-sd1.ckpt', ema: true, vae: 'checkpoints/tiny-vae.safetensors' })), '--models', 'models'], root);
    assert.equal(ok.code, 0, ok.stderr);
    const notModel = await cli(['validate', await write('lora.json', graph({ path: 'checkpoints/tiny-clip-multihead.safetensors' })), '--models', 'models'], root);
    assert.equal(notModel.code, 1);
    assert.match(notModel.stderr, /model.*params\.path[\s\S]*no UNet/i);
    const sd2 = path.join(root, 'models', 'checkpoints', 'no-ema.safetensors');
    await copyFile(path.join(FIXTURES, 'tiny-sd1-fp16.safetensors'), sd2);
    const noEma = await cli(['validate', await write('noema.json', graph({ path: 'checkpoints/no-ema.safetensors', ema: true, vae: 'checkpoints/missing-vae.safetensors' })), '--models', 'models'], root);
    assert.equal(noEma.code, 1);
    assert.match(noEma.stderr, /params\.ema[^\n]*EMA/);
    assert.match(noEma.stderr, /params\.vae[^\n]*not found/);
  });

  it('run with a LoadLoRA on the checkpoint: merged on top of the cached build, the node warns about keys the model lacks', async () => {
    await mkdir(path.join(root, 'models', 'loras'), { recursive: true });
    await copyFile(path.join(FIXTURES, 'lora', 'tiny-sd1-lora-kohya.safetensors'), path.join(root, 'models', 'loras', 'style.safetensors'));
    const g = graph({ path: 'checkpoints/tiny-sd1.ckpt' });
    g.nodes.lora = { type: 'LoadLoRA', params: { path: 'loras/style.safetensors', strength_model: 0.6, strength_clip: 1 }, inputs: { model: link('model', 'model') } };
    for (const n of Object.values(g.nodes)) {
      for (const l of Object.values(n.inputs ?? {})) if (l.node === 'model' && n.type !== 'LoadLoRA') l.node = 'lora';
    }
    const f = path.join(root, 'lora.json');
    await writeFile(f, JSON.stringify(g));
    const r = await cli(['run', f, '--models', 'models', '--out', 'out-lora', '--data', 'data-lora'], root);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /built tiny-sd1\.ckpt with LoRA style\.safetensors into the checkpoint cache/);
    assert.match(r.stderr, /warning: node "lora": 2 modules of style\.safetensors have no weight in this model/);
    assert.equal((await readdir(path.join(root, 'out-lora'))).filter((x) => x.endsWith('.png')).length, 1);
    const folderLora = structuredClone(g);
    folderLora.nodes.model!.params = { provider: 'cpu', path: 'converted' };
    await writeFile(f, JSON.stringify(folderLora));
    const refused = await cli(['validate', f, '--models', 'models'], root);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /node "lora", field "inputs\.model": LoRA is applied to checkpoint files/);
  });

  it('run builds a checkpoint once into --data, reuses it, records the checkpoint hash in the PNG; cache ls and clear', async () => {
    const g = path.join(root, 'run.json');
    await writeFile(g, JSON.stringify(graph({ path: 'checkpoints/tiny-sd1.ckpt' })));
    const first = await cli(['run', g, '--models', 'models', '--out', 'out', '--data', 'data'], root);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /built tiny-sd1\.ckpt into the checkpoint cache/);
    const second = await cli(['run', g, '--models', 'models', '--out', 'out', '--data', 'data'], root);
    assert.equal(second.code, 0, second.stderr);
    assert.doesNotMatch(second.stderr, /built tiny-sd1/);
    const pngs = (await readdir(path.join(root, 'out'))).filter((f) => f.endsWith('.png'));
    assert.equal(pngs.length, 2);
    const meta = JSON.parse(readPngText(await readFile(path.join(root, 'out', pngs[0]!))).get('fusegraph')!) as { models: { folder: string; sha256: Record<string, string> }[] };
    assert.equal(meta.models[0]!.folder, 'checkpoints/tiny-sd1.ckpt');
    assert.match(meta.models[0]!.sha256['checkpoint']!, /^[0-9a-f]{64}$/);
    assert.equal(meta.models[0]!.sha256['checkpoint_short'], meta.models[0]!.sha256['checkpoint']!.slice(0, 10));

    const ls = await cli(['cache', 'ls', '--data', 'data'], root);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /tiny-sd1\.ckpt \(sd1/);
    const clear = await cli(['cache', 'clear', '--data', 'data'], root);
    assert.match(clear.stdout, /removed 1 build/);
    assert.match((await cli(['cache', 'ls', '--data', 'data'], root)).stdout, /no checkpoint builds/);
  });
});
