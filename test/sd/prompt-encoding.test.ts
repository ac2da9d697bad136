/**
 * Prompt encoding on real models: the committed tiny checkpoints (built into ONNX by FuseGraph, run in ONNX Runtime)
 * against their own plain encodings and the PyTorch reference (test/fixtures/checkpoints/reference), and validation
 * of EncodePrompt graphs through the same admission serve and the CLI use.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { writeSafetensors } from '../../server/checkpoint/formats/safetensors-writer.js';
import { prepareRun } from '../../server/engine/prepare.js';
import { executeGraph } from '../../server/execution/executor.js';
import { preflightGraph } from '../../server/execution/preflight.js';
import { CheckpointCache } from '../../server/sd/checkpoint-cache.js';
import { listEmbeddings } from '../../server/sd/embeddings.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import type { ModelSource } from '../../server/sd/model-source.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { applyTokenWeights, encodePrompt } from '../../server/sd/prompt-encoding.js';
import type { SdModel } from '../../server/sd/sd-model.js';
import { REPO_ROOT, txt2imgGraph } from '../helpers/graphs.js';
import { relL2 } from '../helpers/closeness.js';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'checkpoints');
const REFERENCE = path.join(FIXTURES, 'reference');
interface Case {
  name: string;
  inputs: { input_ids: number[][] };
  outputs: Record<string, { file: string; shape: number[] }>;
}
const manifest = JSON.parse(await readFile(path.join(REFERENCE, 'manifest.json'), 'utf8')) as { cases: Case[] };
const byName = (name: string): Case => manifest.cases.find((c) => c.name === name)!;
const npy = async (file: string): Promise<Float32Array> => decodeNpy(await readFile(path.join(REFERENCE, file))).data;

const W = 64;
let root: string;
let models: string;
let manager: ModelManager;
let sd1: SdModel;
let sd2: SdModel;

const source = (file: string): ModelSource => ({ path: path.join(models, 'checkpoints', file), kind: 'checkpoint', ema: false, vae: null, prediction: 'auto', loras: [] });
const encode = (m: SdModel, text: string, clipSkip = 1) => encodePrompt(m, text, { clipSkip, modelsRoot: models });
/** The token table's rows, to build embeddings whose splicing has a known answer. */
let tokenRows: (ids: number[]) => Promise<Float32Array>;

before(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-prompt-'));
  models = path.join(root, 'models');
  await mkdir(path.join(models, 'checkpoints'), { recursive: true });
  await mkdir(path.join(models, 'embeddings', 'styles'), { recursive: true });
  for (const f of ['tiny-sd1.ckpt', 'tiny-sd2.safetensors']) await copyFile(path.join(FIXTURES, f), path.join(models, 'checkpoints', f));
  const cache = new CheckpointCache({ dir: path.join(root, 'data', 'checkpoints'), maxBytes: 2 ** 40, log: () => undefined });
  manager = new ModelManager({ checkpoints: cache, isolation: 'thread' });
  [sd1, sd2] = await Promise.all([manager.acquire(source('tiny-sd1.ckpt'), 'cpu'), manager.acquire(source('tiny-sd2.safetensors'), 'cpu')]);
  const ckpt = await openTensorFile(path.join(FIXTURES, 'tiny-sd1.ckpt'));
  const table = await ckpt.readFloat32('cond_stage_model.transformer.text_model.embeddings.token_embedding.weight');
  await ckpt.close();
  tokenRows = async (ids) => {
    const out = new Float32Array(ids.length * W);
    ids.forEach((id, i) => out.set(table.subarray(id * W, (id + 1) * W), i * W));
    return out;
  };
  // "red dog" as a 2-vector embedding in three file forms, and one of the wrong width.
  const redDog = await tokenRows([736, 1929]);
  await writeSafetensors(path.join(models, 'embeddings', 'reddog.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [2, W], data: redDog }]);
  await writeSafetensors(path.join(models, 'embeddings', 'styles', 'red.safetensors'), [{ name: 'anything', dtype: 'F32', shape: [W], data: redDog.slice(0, W) }]);
  await writeSafetensors(path.join(models, 'embeddings', 'wide.safetensors'), [{ name: 'emb_params', dtype: 'F32', shape: [1, 768], data: new Float32Array(768) }]);
});
after(async () => {
  manager.release(sd1);
  manager.release(sd2);
  await manager.dispose();
  await rm(root, { recursive: true, force: true });
});

describe('prompt encoding on tiny-sd1.ckpt', () => {
  test('a prompt without weights encodes bit for bit as its plain token ids', async () => {
    for (const text of ['a red cat on the left', '(cat:1.0) dog', '']) {
      const { cond } = await encode(sd1, text);
      const plainText = text.replace('(cat:1.0)', 'cat');
      const plain = await sd1.encodeText([sd1.tokenizer.encodePadded(plainText)]);
      assert.deepEqual(cond.shape, [1, 77, W]);
      assert.deepEqual(cond.data, plain.data, text);
    }
  });

  test('a weight w gives exactly z_empty + w·(z − z_empty) at its tokens, the others untouched', async () => {
    const { cond } = await encode(sd1, 'a (cat:1.3) ((dog))');
    const z = (await sd1.encodeText([sd1.tokenizer.encodePadded('a cat dog')])).data;
    const empty = (await sd1.encodeText([sd1.tokenizer.encodePadded('')])).data;
    const weights = [1, 1, 1.3, 1.1 * 1.1, ...Array<number>(73).fill(1)];
    for (let j = 0; j < 77; j++) {
      const w = Math.fround(weights[j]!);
      for (let k = 0; k < W; k++) {
        const i = j * W + k;
        const want = weights[j] === 1 ? z[i]! : Math.fround(Math.fround(Math.fround(z[i]! - empty[i]!) * w) + empty[i]!);
        assert.equal(cond.data[i], want, `token ${j}, channel ${k}`);
      }
    }
    const manual = z.slice();
    applyTokenWeights(manual, empty, weights, W);
    assert.deepEqual(cond.data, manual);
  });

  test('a 120-token prompt gives [1, 154, W]: its two chunks, each encoded as a prompt of its own', async () => {
    const words = Array.from({ length: 120 }, (_, i) => ['cat', 'dog', 'red'][i % 3]!);
    const { cond, tokenized } = await encode(sd1, words.join(' '));
    assert.deepEqual(tokenized.counts, [75, 45]);
    assert.deepEqual(cond.shape, [1, 154, W]);
    const first = await sd1.encodeText([sd1.tokenizer.encodePadded(words.slice(0, 75).join(' '))]);
    const second = await sd1.encodeText([sd1.tokenizer.encodePadded(words.slice(75).join(' '))]);
    assert.deepEqual(cond.data.subarray(0, 77 * W), first.data);
    assert.deepEqual(cond.data.subarray(77 * W), second.data);
  });

  test("clip_skip 2 equals the PyTorch reference's clip_skip_2 (penultimate layer, final layer norm)", async (t) => {
    const c = byName('sd1-text');
    const want = await npy(c.outputs['clip_skip_2']!.file);
    const got = await sd1.encodeText(c.inputs.input_ids, { layer: 'penultimate' });
    const d = relL2(got.data, want);
    t.diagnostic(`relative L2 ${d.toExponential(2)}`);
    assert.ok(d < 1e-5, String(d));
    // EncodePrompt with clip_skip 2 on the same ids' text ("a red cat on the left").
    assert.deepEqual(sd1.tokenizer.encodePadded('a red cat on the left'), c.inputs.input_ids[0]);
    const { cond } = await encode(sd1, 'a red cat on the left', 2);
    assert.deepEqual(cond.data, got.data.subarray(0, 77 * W));
    assert.ok(relL2(cond.data, (await encode(sd1, 'a red cat on the left', 1)).cond.data) > 1e-3, 'clip skip 2 differs from the last layer');
  });

  test('embedding:NAME splices its vectors in place of the word: "red dog" as an embedding encodes as the words', async () => {
    const plain = await sd1.encodeText([sd1.tokenizer.encodePadded('a red dog cat')]);
    const { cond, tokenized } = await encode(sd1, 'a embedding:reddog cat');
    assert.deepEqual(tokenized.counts, [4]);
    assert.deepEqual(cond.data, plain.data);
    // A one-vector file in a subfolder, with a weight; and the ComfyUI comma fallback.
    const weighted = await encode(sd1, '(embedding:styles/red:1.2) dog');
    assert.deepEqual(weighted.cond.data, (await encode(sd1, '(red:1.2) dog')).cond.data);
    assert.deepEqual((await encode(sd1, 'embedding:styles/red, dog')).cond.data, (await encode(sd1, 'red , dog')).cond.data);
    assert.deepEqual(await listEmbeddings(models), ['reddog', 'styles/red', 'wide']);
  });
});

describe('SD-2 (tiny-sd2.safetensors): clip_skip', () => {
  test('clip_skip 2 is the default already (the penultimate layer): both equal the reference', async (t) => {
    const c = byName('sd2-text');
    const want = await npy(c.outputs['penultimate']!.file);
    const ids = c.inputs.input_ids;
    assert.deepEqual(sd2.tokenizer.encodePadded('a red cat on the left'), ids[0]);
    const one = (await encode(sd2, 'a red cat on the left', 1)).cond;
    const two = (await encode(sd2, 'a red cat on the left', 2)).cond;
    assert.deepEqual(two.data, one.data);
    const d = relL2(one.data, want.subarray(0, 77 * W));
    t.diagnostic(`relative L2 ${d.toExponential(2)}`);
    assert.ok(d < 1e-5, String(d));
  });

  test('weights interpolate towards the SD-2 empty prompt, which pads with "!" (id 0)', async () => {
    const { cond } = await encode(sd2, '(cat:0.5)');
    const z = (await sd2.encodeText([sd2.tokenizer.encodePadded('cat')])).data;
    const emptyIds = sd2.tokenizer.encodePadded('');
    assert.deepEqual(emptyIds.slice(0, 3), [49406, 49407, 0]);
    const empty = (await sd2.encodeText([emptyIds])).data;
    const want = z.slice();
    applyTokenWeights(want, empty, [1, 0.5, ...Array<number>(75).fill(1)], W);
    assert.deepEqual(cond.data, want);
  });
});

describe('EncodePrompt validation', () => {
  const issuesOf = async (graph: unknown) => {
    const prepared = await prepareRun(graph, (plan) => preflightGraph(plan, { roots: { models } }));
    return prepared.ok ? [] : prepared.issues;
  };
  const graph = (text: string, clipSkip: unknown = 1) => {
    const g = txt2imgGraph('checkpoints/tiny-sd1.ckpt', { prompt: text, size: 16 });
    (g.nodes['pos']!.params as Record<string, unknown>)['clip_skip'] = clipSkip;
    return g;
  };

  test('a valid prompt with embeddings passes', async () => {
    assert.deepEqual(await issuesOf(graph('a embedding:reddog (embedding:styles/red:1.2)')), []);
  });

  test('a missing embedding is refused naming it', async () => {
    const issues = await issuesOf(graph('a embedding:nothere cat'));
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.node, 'pos');
    assert.equal(issues[0]!.field, 'params.text');
    assert.match(issues[0]!.message, /embedding "nothere" not found/);
  });

  test('an embedding of the wrong width is refused naming it and both widths', async () => {
    const issues = await issuesOf(graph('embedding:wide cat'));
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.field, 'params.text');
    assert.match(issues[0]!.message, /embedding "wide" has vectors of width 768, but the model's text encoder has width 64/);
  });

  test('clip_skip as a string, or out of range, and a text that is not a string are refused', async () => {
    const s = await issuesOf(graph('cat', '2'));
    assert.ok(s.some((i) => i.node === 'pos' && i.field === 'params.clip_skip'), JSON.stringify(s));
    const r = await issuesOf(graph('cat', 3));
    assert.ok(r.some((i) => i.node === 'pos' && i.field === 'params.clip_skip' && i.code === 'param_range'), JSON.stringify(r));
    const g = graph('cat');
    (g.nodes['pos']!.params as Record<string, unknown>)['text'] = 1.2;
    const n = await issuesOf(g);
    assert.ok(n.some((i) => i.node === 'pos' && i.field === 'params.text'), JSON.stringify(n));
  });

  test('a weight that is not finite is refused', async () => {
    const issues = await issuesOf(graph('(cat:inf)'));
    assert.equal(issues.length, 1);
    assert.match(issues[0]!.message, /weight inf is not a finite number/);
  });
});

describe('PredictNoise with conditionings of different lengths', () => {
  test('a 154-token positive and a 77-token negative run (the negative repeated to 154, as ComfyUI batches them)', async () => {
    const long = Array.from({ length: 100 }, () => 'cat').join(' ');
    const g = txt2imgGraph('checkpoints/tiny-sd1.ckpt', { prompt: long, size: 16, steps: 2 });
    const result = await executeGraph(g, { roots: { models, input: path.join(root, 'input'), output: path.join(root, 'output') }, models: manager });
    assert.equal(result.outputs.length, 1);
  });
});
