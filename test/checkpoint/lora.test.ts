/**
 * LoRA reading, key mapping, merging and patch-mode rebuilds against the committed PyTorch reference
 * (tools/checkpoint-reference/make_lora_fixtures.py: ComfyUI's merge formula in torch, LDM's UNetModel on the
 * merged state dict), on tiny-sd1.ckpt. Real files and real ONNX Runtime sessions throughout.
 *
 * Tolerances (measured; see the diagnostics): merged weights against torch ≤ 6.0e-8 max abs, JS and ORT paths alike
 * (weights are O(0.1–1)) → asserted at 1e-6. The planted mistakes land 0.26 (strength_model ignored), 0.43 (alpha
 * ignored), 0.85 (text encoder's part dropped) and 2.6 (rank not divided) away: the bound discriminates by > 10⁵.
 * UNet of the merged model against torch: max abs ≤ 4.6e-6 / rel L2 ≤ 1.3e-6 → asserted at 1e-4 / 1e-5 as the base
 * UNet tests do; the LoRA moves the output by ≈1 (max abs), so a dropped module is caught there too.
 * Patch-mode rebuilds are compared bit for bit with full builds of the same patched weights.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, truncate, copyFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';

import type { ModelArchitecture } from '../../server/checkpoint/architecture.js';
import { GraphOps, createGraphBuilder, transposeToInOut } from '../../server/checkpoint/build/graph-ops.js';
import { buildTextEncoderGraph } from '../../server/checkpoint/build/text-encoder-graph.js';
import { buildUnetGraph } from '../../server/checkpoint/build/unet-graph.js';
import { componentWeights, describeCheckpoint } from '../../server/checkpoint/describe.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { writeSafetensors, type SafetensorsWriteEntry } from '../../server/checkpoint/formats/safetensors-writer.js';
import { diffusersUnetRenamer } from '../../server/checkpoint/key-layouts.js';
import { DataType } from '../../server/onnx-writer/graph-builder.js';
import { ldmToDiffusersUnet, loraKeyMap, matchLora, type LoraMatch, type LoraModel } from '../../server/checkpoint/lora/key-map.js';
import { readLora, type LoraDescription } from '../../server/checkpoint/lora/lora-file.js';
import { jsAddProduct, LoraMerger, loraPatches, type LoraApplication } from '../../server/checkpoint/lora/merge.js';
import { patchedWeights, type WeightPatchFn } from '../../server/checkpoint/lora/patched-weights.js';
import { CheckpointError, type TensorFile } from '../../server/checkpoint/tensor-file.js';
import { linkBaseWeights, WeightPatch, withWeightPatch, type GraphPrecision, type Weights } from '../../server/checkpoint/weights.js';
import { decodeNpy } from '../../server/sd/npy.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/checkpoints');
const LORA = path.join(FIXTURES, 'lora');
const REFERENCE = path.join(LORA, 'reference');
const KOHYA = path.join(LORA, 'tiny-sd1-lora-kohya.safetensors');
const PEFT = path.join(LORA, 'tiny-sd1-lora-peft.safetensors');

const WEIGHT_TOL = 1e-6;
const UNET_TOL = { maxAbs: 1e-4, relL2: 1e-5 };

interface NpyRef {
  file: string;
  shape: number[];
}
interface Manifest {
  strength_model: number;
  strength_clip: number;
  merged: (NpyRef & { lora: string; component: 'unet' | 'te'; name: string; stack: ('kohya' | 'peft')[] })[];
  unet: { name: string; stack: ('kohya' | 'peft')[]; timestep: number; sample: NpyRef; context: NpyRef; out: NpyRef }[];
}

let tmp: string;
let manifest: Manifest;
let ckpt: TensorFile;
let model: LoraModel;
let arch: ModelArchitecture;
let merger: LoraMerger;
const open: TensorFile[] = [];
const loras = new Map<'kohya' | 'peft', { file: TensorFile; desc: LoraDescription; match: LoraMatch }>();

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-lora-'));
  manifest = JSON.parse(await readFile(path.join(REFERENCE, 'manifest.json'), 'utf8')) as Manifest;
  ckpt = await openTensorFile(path.join(FIXTURES, 'tiny-sd1.ckpt'));
  const desc = await describeCheckpoint(ckpt);
  assert.ok(desc.architecture, desc.unsupported ?? 'tiny-sd1 is usable');
  arch = desc.architecture;
  model = {
    architecture: arch,
    unet: componentWeights(ckpt, desc, 'unet', { ema: false }),
    textEncoder: componentWeights(ckpt, desc, 'textEncoder', { ema: false }),
  };
  merger = await LoraMerger.create({ intraOpNumThreads: 1 });
  for (const [tag, p] of [['kohya', KOHYA], ['peft', PEFT]] as const) {
    const file = await openTensorFile(p);
    open.push(file);
    const d = await readLora(file);
    loras.set(tag, { file, desc: d, match: matchLora(d, model) });
  }
});

after(async () => {
  await merger?.release();
  for (const f of open) await f.close();
  await ckpt?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function npy(dir: string, ref: NpyRef): Promise<{ data: Float32Array; shape: number[] }> {
  const r = decodeNpy(await readFile(path.join(dir, ref.file)), ref.file);
  assert.deepEqual(r.shape, ref.shape);
  return r;
}

function errors(got: Float32Array, want: Float32Array): { maxAbs: number; relL2: number } {
  assert.equal(got.length, want.length);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    assert.ok(Number.isFinite(got[i]!), `value ${i} is ${got[i]}`);
    const d = got[i]! - want[i]!;
    maxAbs = Math.max(maxAbs, Math.abs(d));
    num += d * d;
    den += want[i]! * want[i]!;
  }
  return { maxAbs, relL2: Math.sqrt(num / den) };
}

/** The stack's applications at the manifest's strengths (kohya at strength_model/clip, PEFT at 1/1). */
function stack(tags: readonly ('kohya' | 'peft')[], edit?: (m: LoraMatch) => LoraMatch, strengths?: { model: number; clip: number }): LoraApplication[] {
  return tags.map((tag) => {
    const l = loras.get(tag)!;
    const kohya = tag === 'kohya';
    return {
      file: l.file,
      match: edit ? edit(l.match) : l.match,
      strengthModel: strengths?.model ?? (kohya ? manifest.strength_model : 1),
      strengthClip: strengths?.clip ?? (kohya ? manifest.strength_clip : 1),
    };
  });
}

/** The largest error of any reference merged weight of `tags` from the patches of `apps`. */
async function worstMergeError(t: TestContext, tags: readonly ('kohya' | 'peft')[], apps: LoraApplication[], m: LoraMerger, label: string): Promise<number> {
  const patches = loraPatches(apps, m);
  const views = { unet: patchedWeights(model.unet, patches.unet), te: patchedWeights(model.textEncoder, patches.textEncoder) };
  let worst = 0;
  const key = tags.join('+');
  for (const ref of manifest.merged.filter((r) => r.stack.join('+') === key)) {
    const want = await npy(REFERENCE, ref);
    const got = await views[ref.component].float32(ref.name);
    const e = errors(got, want.data);
    worst = Math.max(worst, e.maxAbs);
  }
  t.diagnostic(`${label}: worst merged-weight max abs error ${worst.toExponential(2)}`);
  return worst;
}

describe('reading LoRA files', () => {
  test('kohya: modules, alpha, LoCon mid, unknown tensors', () => {
    const { desc } = loras.get('kohya')!;
    assert.equal(desc.modules.size, 13);
    const q = desc.modules.get('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q')!;
    assert.equal(q.format, 'kohya');
    assert.equal(q.alpha, 2);
    assert.equal(q.rank, 4);
    assert.deepEqual(q.deltaShape, [32, 32]);
    assert.equal(desc.modules.get('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k')!.alpha, null);
    const mid = desc.modules.get('lora_unet_up_blocks_0_resnets_1_conv2')!;
    assert.ok(mid.mid?.endsWith('.lora_mid.weight'));
    assert.deepEqual(mid.deltaShape, [64, 64, 3, 3]);
    assert.deepEqual(desc.modules.get('lora_unet_down_blocks_1_resnets_0_conv1')!.deltaShape, [64, 32, 3, 3]);
    assert.deepEqual(desc.unknownKeys, { count: 1, first: ['bundle_emb.tiny.string_to_param.*'] });
    assert.equal(desc.family, null, 'tiny widths say nothing about the family');
  });

  test('PEFT and diffusers spellings', () => {
    const { desc } = loras.get('peft')!;
    assert.equal(desc.modules.size, 6);
    const formats = [...desc.modules.values()].map((m) => `${m.key}:${m.format}`);
    assert.ok(formats.includes('unet.down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_q:peft'));
    assert.ok(formats.includes('unet.mid_block.attentions.0.transformer_blocks.0.attn2.processor.to_k:diffusers'));
    assert.ok(formats.includes('text_encoder.text_model.encoder.layers.1.mlp.fc2:diffusers'));
    for (const m of desc.modules.values()) assert.equal(m.alpha, null);
  });

  test('LoHa is refused by name', async () => {
    const f = await openTensorFile(path.join(LORA, 'tiny-lora-loha.safetensors'));
    try {
      await assert.rejects(readLora(f), (e: Error) => e instanceof CheckpointError && /^.*: LoHa LoRAs are not supported yet/.test(e.message) && /hada_w/.test(e.message));
    } finally {
      await f.close();
    }
  });

  test('a NaN is refused naming the tensor', async () => {
    const f = await openTensorFile(path.join(LORA, 'tiny-lora-nan.safetensors'));
    try {
      await assert.rejects(readLora(f), (e: Error) => e instanceof CheckpointError && e.message.includes('lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight holds NaN'));
    } finally {
      await f.close();
    }
  });

  const writeLora = async (name: string, tensors: Record<string, { shape: number[]; value?: number }>, metadata?: Record<string, string>): Promise<TensorFile> => {
    const p = path.join(tmp, name);
    const entries: SafetensorsWriteEntry[] = Object.entries(tensors).map(([n, t]) => ({
      name: n,
      dtype: 'F32',
      shape: t.shape,
      data: new Float32Array(t.shape.reduce((a, b) => a * b, 1)).fill(t.value ?? 0.01),
    }));
    await writeSafetensors(p, entries, metadata);
    const f = await openTensorFile(p);
    open.push(f);
    return f;
  };

  for (const [what, key, pattern] of [
    ['LoKr', 'lora_unet_x.lokr_w1', /LoKr LoRAs are not supported yet/],
    ['DoRA', 'lora_unet_x.dora_scale', /DoRA LoRAs are not supported yet/],
    ['GLoRA', 'lora_unet_x.a1.weight', /GLoRA LoRAs are not supported yet/],
    ['OFT', 'lora_unet_x.oft_blocks', /OFT\/BOFT LoRAs are not supported yet/],
  ] as const) {
    test(`${what} is refused by name`, async () => {
      const f = await writeLora(`${what}.safetensors`, {
        'lora_unet_y.lora_up.weight': { shape: [4, 2] },
        'lora_unet_y.lora_down.weight': { shape: [2, 4] },
        [key]: { shape: [2, 2] },
      });
      await assert.rejects(readLora(f), (e: Error) => e instanceof CheckpointError && pattern.test(e.message));
    });
  }

  test('Inf in an alpha, a lone up, and a file with no LoRA module are refused', async () => {
    const inf = await writeLora('inf.safetensors', { 'lora_unet_y.lora_up.weight': { shape: [4, 2] }, 'lora_unet_y.lora_down.weight': { shape: [2, 4] }, 'lora_unet_y.alpha': { shape: [], value: Infinity } });
    await assert.rejects(readLora(inf), /lora_unet_y\.alpha is Infinity/);
    const lone = await writeLora('lone.safetensors', { 'lora_unet_y.lora_up.weight': { shape: [4, 2] } });
    await assert.rejects(readLora(lone), /has an up tensor \(lora_unet_y\.lora_up\.weight\) but no down/);
    const none = await writeLora('none.safetensors', { 'model.diffusion_model.out.2.weight': { shape: [4, 2] } });
    await assert.rejects(readLora(none), /not a LoRA: none of its 1 tensors/);
  });

  test('a corrupt file gets the reader\'s error', async () => {
    const p = path.join(tmp, 'truncated.safetensors');
    await copyFile(KOHYA, p);
    await truncate(p, (await stat(p)).size - 100);
    await assert.rejects(openTensorFile(p), CheckpointError);
  });

  test('LoRAs for other families are refused by matchLora', async () => {
    const sdxl = await writeLora('sdxl-te2.safetensors', {
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': { shape: [64, 4] },
      'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': { shape: [4, 64] },
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight': { shape: [64, 4] },
      'lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': { shape: [4, 64] },
    });
    const sdxlD = await readLora(sdxl);
    assert.throws(() => matchLora(sdxlD, model), /this is an SDXL LoRA \(a second text encoder \(lora_te2_/);
    const ctx2048 = await writeLora('sdxl-unet.safetensors', {
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight': { shape: [64, 4] },
      'lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight': { shape: [4, 2048] },
    });
    const ctx2048D = await readLora(ctx2048);
    assert.throws(() => matchLora(ctx2048D, model), /SDXL LoRA \(cross-attention context 2048 wide\)/);
    // SD-2's 1024-wide context on this model's 64-wide one: the shape check names module, weight and family.
    const sd2 = await writeLora('sd2-unet.safetensors', {
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight': { shape: [64, 4] },
      'lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight': { shape: [4, 1024] },
    });
    const sd2D = await readLora(sd2);
    assert.throws(
      () => matchLora(sd2D, model),
      /lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k makes a \[64, 1024\] change to input_blocks\.4\.1\.transformer_blocks\.0\.attn2\.to_k\.weight, which is \[64, 64\] in this model: the LoRA does not fit this model \(the LoRA looks made for SD-2/,
    );
    // On a model with SD-1's real widths the family alone decides (metadata here).
    const meta = await writeLora('sd2-meta.safetensors', { 'lora_unet_y.lora_up.weight': { shape: [4, 2] }, 'lora_unet_y.lora_down.weight': { shape: [2, 4] } }, { ss_base_model_version: 'sd_v2' });
    const metaD = await readLora(meta);
    const sd1Widths: LoraModel = { ...model, architecture: { ...arch, unet: { ...arch.unet, contextDim: 768 } } };
    assert.throws(() => matchLora(metaD, sd1Widths), /made for SD-2 models \(its metadata \(sd_v2\)\) but the model is SD-1/);
    const foreign = await writeLora('foreign.safetensors', { 'lora_unet_nothing_here.lora_up.weight': { shape: [4, 2] }, 'lora_unet_nothing_here.lora_down.weight': { shape: [2, 4] } });
    const foreignD = await readLora(foreign);
    assert.throws(() => matchLora(foreignD, model), /none of the LoRA's 1 modules matches a weight of this SD-1 model \(first: lora_unet_nothing_here\)/);
  });

});

describe('key map', () => {
  test('LDM → diffusers UNet names invert key-layouts.ts\'s diffusers → LDM renamer', () => {
    const ldm = [...model.unet.names()];
    const diffusers: string[] = [];
    let mapped = 0;
    for (const n of ldm) {
      const d = ldmToDiffusersUnet(n.replace(/\.(weight|bias)$/, ''), arch.unet);
      if (d === null) continue;
      mapped++;
      diffusers.push(`${d}${n.slice(n.lastIndexOf('.'))}`);
    }
    assert.equal(mapped, ldm.length, 'every UNet tensor has a diffusers name');
    const back = diffusersUnetRenamer(diffusers);
    for (let i = 0; i < ldm.length; i++) assert.equal(back(diffusers[i]!), ldm[i], diffusers[i]!);
  });

  test('the forward map has every dialect of a UNet and a CLIP weight', () => {
    const map = loraKeyMap(model);
    const to = (k: string): string | undefined => map.get(k)?.name;
    const q = 'input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight';
    for (const k of [
      'lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q',
      'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q',
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
      'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q',
      'unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q',
    ]) assert.equal(to(k), q, k);
    const out = 'output_blocks.5.1.transformer_blocks.0.attn1.to_out.0.weight';
    for (const k of ['unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0', 'unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out', 'unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.processor.to_out']) {
      assert.equal(to(k), out, k);
    }
    assert.equal(to('lora_unet_up_blocks_1_upsamplers_0_conv'), 'output_blocks.5.2.conv.weight');
    assert.equal(to('lora_unet_down_blocks_0_downsamplers_0_conv'), 'input_blocks.3.0.op.weight');
    assert.equal(to('lora_unet_mid_block_resnets_1_time_emb_proj'), 'middle_block.2.emb_layers.1.weight');
    const fc1 = 'text_model.encoder.layers.1.mlp.fc1.weight';
    for (const k of ['lora_te_text_model_encoder_layers_1_mlp_fc1', 'lora_te1_text_model_encoder_layers_1_mlp_fc1', 'text_encoder.text_model.encoder.layers.1.mlp.fc1']) {
      assert.deepEqual(map.get(k), { component: 'textEncoder', name: fc1, rows: null }, k);
    }
  });

  test('OpenCLIP (SD-2): q/k/v land on row blocks of the fused in_proj', async () => {
    const f = await openTensorFile(path.join(FIXTURES, 'tiny-sd2.safetensors'));
    try {
      const d = await describeCheckpoint(f);
      assert.ok(d.architecture);
      const map = loraKeyMap({ architecture: d.architecture, unet: componentWeights(f, d, 'unet', { ema: false }), textEncoder: componentWeights(f, d, 'textEncoder', { ema: false }) });
      const W = d.architecture.textEncoder.width;
      assert.deepEqual(map.get('lora_te_text_model_encoder_layers_2_self_attn_k_proj'), { component: 'textEncoder', name: 'transformer.resblocks.2.attn.in_proj_weight', rows: { start: W, count: W } });
      assert.equal(map.get('lora_te_text_model_encoder_layers_0_mlp_fc2')?.name, 'transformer.resblocks.0.mlp.c_proj.weight');
      assert.equal(map.get('lora_unet_down_blocks_0_attentions_0_proj_in')?.name, 'input_blocks.1.1.proj_in.weight');
    } finally {
      await f.close();
    }
  });

  test('unknown keys are reported', () => {
    const { match } = loras.get('kohya')!;
    assert.equal(match.entries.length, 12);
    assert.equal(match.unetModules, 9);
    assert.equal(match.textEncoderModules, 3);
    assert.deepEqual(match.unmatched, { count: 2, first: ['lora_unet_down_blocks_5_attentions_0_proj_in', 'bundle_emb.tiny.string_to_param.*'] });
    const peft = loras.get('peft')!.match;
    assert.equal(peft.entries.length, 6);
    assert.equal(peft.unmatched.count, 0);
  });
});

describe('merging against the PyTorch reference', () => {
  for (const tags of [['kohya'], ['kohya', 'peft']] as const) {
    test(`${tags.join(' + ')}: merged weights, JS and ONNX Runtime paths`, async (t) => {
      assert.ok((await worstMergeError(t, tags, stack(tags), merger, `${tags.join('+')} (JS)`)) <= WEIGHT_TOL);
      const ortOnly = await LoraMerger.create({ jsMaxMacs: 0, intraOpNumThreads: 1 });
      try {
        assert.ok((await worstMergeError(t, tags, stack(tags), ortOnly, `${tags.join('+')} (ORT)`)) <= WEIGHT_TOL);
        assert.ok(ortOnly.stats.ort > 0 && ortOnly.stats.js === 0, 'every product ran in ONNX Runtime');
      } finally {
        await ortOnly.release();
      }
    });
  }

  test('planted mistakes are far outside the tolerance', async (t) => {
    const edit = (f: (m: LoraMatch['entries'][number]['module']) => LoraMatch['entries'][number]['module']) => (m: LoraMatch): LoraMatch => ({
      ...m,
      entries: m.entries.map((e) => ({ ...e, module: f(e.module) })),
    });
    const alphaIgnored = await worstMergeError(t, ['kohya'], stack(['kohya'], edit((m) => ({ ...m, alpha: null }))), merger, 'alpha ignored');
    const rankNotDivided = await worstMergeError(t, ['kohya'], stack(['kohya'], edit((m) => ({ ...m, alpha: (m.alpha ?? m.rank) * m.rank }))), merger, 'rank not divided');
    const teDropped = await worstMergeError(t, ['kohya'], stack(['kohya'], undefined, { model: manifest.strength_model, clip: 0 }), merger, 'text encoder dropped');
    const strengthIgnored = await worstMergeError(t, ['kohya'], stack(['kohya'], undefined, { model: 1, clip: 1 }), merger, 'strength_model ignored');
    for (const [what, e] of Object.entries({ alphaIgnored, rankNotDivided, teDropped, strengthIgnored })) {
      assert.ok(e > 1e4 * WEIGHT_TOL, `${what}: ${e} is not far from the reference`);
    }
  });

  test('W + s·A@B: JS and ONNX Runtime agree, on sub-arrays too', async (t) => {
    const m = 96;
    const k = 8;
    const n = 200;
    const rnd = (len: number, seed: number): Float32Array => Float32Array.from({ length: len }, (_, i) => Math.sin(seed * 1000 + i * 12.9898) * 0.5);
    const backing = rnd(m * n + 17, 1);
    const w = backing.subarray(17);
    const a = rnd(m * k, 2);
    const b = rnd(k * n, 3);
    const js = jsAddProduct(w, a, b, m, k, n, 0.37);
    const ortOnly = await LoraMerger.create({ jsMaxMacs: 0, intraOpNumThreads: 1 });
    try {
      const viaOrt = await ortOnly.addProduct(w, a, b, m, k, n, 0.37);
      const e = errors(viaOrt, js);
      t.diagnostic(`JS vs ORT: max abs ${e.maxAbs.toExponential(2)}`);
      assert.ok(e.maxAbs <= 1e-6);
    } finally {
      await ortOnly.release();
    }
  });
});

describe('UNet graph of the merged model against the PyTorch merged-model call', () => {
  for (const tags of [['kohya'], ['kohya', 'peft']] as const) {
    test(tags.join(' + '), async (t) => {
      const ref = manifest.unet.find((u) => u.stack.join('+') === tags.join('+'))!;
      const patches = loraPatches(stack(tags), merger);
      const dir = path.join(tmp, `merged-${tags.join('-')}`);
      await buildUnetGraph(patchedWeights(model.unet, patches.unet), arch.unet, dir, { precision: 'float32' });
      const out = await runUnet(path.join(dir, 'model.onnx'), ref);
      const e = errors(out, (await npy(REFERENCE, ref.out)).data);
      t.diagnostic(`max abs ${e.maxAbs.toExponential(2)}, rel L2 ${e.relL2.toExponential(2)}`);
      assert.ok(e.maxAbs <= UNET_TOL.maxAbs && e.relL2 <= UNET_TOL.relL2, JSON.stringify(e));
    });
  }
});

async function runUnet(modelPath: string, ref: Manifest['unet'][number]): Promise<Float32Array> {
  const sample = await npy(REFERENCE, ref.sample);
  const context = await npy(REFERENCE, ref.context);
  const session = await ort.InferenceSession.create(modelPath, { executionProviders: ['cpu'], intraOpNumThreads: 1 });
  try {
    const out = await session.run({
      sample: new ort.Tensor('float32', sample.data, sample.shape),
      timestep: new ort.Tensor('float32', new Float32Array(sample.shape[0]!).fill(ref.timestep), [sample.shape[0]!]),
      encoder_hidden_states: new ort.Tensor('float32', context.data, context.shape),
    });
    return out.out_sample!.data as Float32Array;
  } finally {
    await session.release();
  }
}

/** A view that records which tensors were read. */
function recording(w: Weights): { weights: Weights; read: string[] } {
  const read: string[] = [];
  return { read, weights: { has: (n) => w.has(n), shape: (n) => w.shape(n), names: () => w.names(), float32: (n) => (read.push(n), w.float32(n)) } };
}

describe('patch mode: rebuild only the changed tensors', () => {
  // A ResBlock conv (through param) and a GEGLU projection (split into two constants by the emitter).
  const CHANGED = ['input_blocks.4.0.in_layers.2.weight', 'middle_block.1.transformer_blocks.0.ff.net.0.proj.weight'];
  const bump: WeightPatchFn = async (w) => w.map((v, i) => v + 0.01 * Math.sin(i));

  for (const precision of ['float32', 'float16'] as GraphPrecision[]) {
    test(`UNet, ${precision}: outputs bit-equal to a full build, side file holds only the changed tensors`, async (t) => {
      const root = path.join(tmp, `patch-unet-${precision}`);
      const patched = patchedWeights(model.unet, new Map(CHANGED.map((n) => [n, bump])));
      await buildUnetGraph(model.unet, arch.unet, path.join(root, 'base'), { precision });
      await buildUnetGraph(patched, arch.unet, path.join(root, 'full'), { precision });
      const dir = path.join(root, 'patched');
      const { linked } = await linkBaseWeights(path.join(root, 'base', 'weights.pb'), dir);
      assert.ok(linked);
      const rec = recording(patched);
      const patch = new WeightPatch({ baseLocation: 'base-weights.pb', changed: (n) => patched.patchedNames.has(n) });
      await withWeightPatch(patch, () => buildUnetGraph(rec.weights, arch.unet, dir, { precision }));

      const ref = manifest.unet[0]!;
      const full = await runUnet(path.join(root, 'full', 'model.onnx'), ref);
      const viaPatch = await runUnet(path.join(dir, 'model.onnx'), ref);
      assert.deepEqual(Buffer.from(viaPatch.buffer, viaPatch.byteOffset, viaPatch.byteLength), Buffer.from(full.buffer, full.byteOffset, full.byteLength), 'bit-equal outputs');
      const base = await runUnet(path.join(root, 'base', 'model.onnx'), ref);
      assert.ok(errors(viaPatch, base).maxAbs > 1e-3, 'the patch changes the output');

      // Side file: the conv [64,32,3,3] and the GEGLU halves [64,256] ×2, each at a 64-byte boundary.
      const el = precision === 'float16' ? 2 : 4;
      const sizes = [64 * 32 * 9 * el, 64 * 256 * el, 64 * 256 * el];
      let expected = 0;
      for (const s of sizes) expected = Math.ceil(expected / 64) * 64 + s;
      const side = (await stat(path.join(dir, 'weights.pb'))).size;
      const baseSize = (await stat(path.join(root, 'base', 'weights.pb'))).size;
      t.diagnostic(`patch side file ${side} bytes (base ${baseSize}); referenced ${patch.stats.referenced} tensors, wrote ${patch.stats.written}`);
      assert.equal(side, expected);
      assert.equal(patch.stats.written, 3);
      // Nothing big was read but the changed tensors and the GEGLU projections and biases (graph-ops.ts geglu reads those itself).
      const bigReads = rec.read.filter((n) => patched.shape(n).reduce((a, b) => a * b, 1) * el >= 1024);
      assert.deepEqual(bigReads.filter((n) => !CHANGED.includes(n) && !/\.ff\.net\.0\.proj\.(weight|bias)$/.test(n)), []);
      assert.ok(bigReads.includes(CHANGED[0]!));
    });
  }

  test('text encoder in patch mode equals its full build', async () => {
    const root = path.join(tmp, 'patch-te');
    const name = 'text_model.encoder.layers.1.mlp.fc1.weight';
    const patched = patchedWeights(model.textEncoder, new Map([[name, bump]]));
    await buildTextEncoderGraph(model.textEncoder, arch.textEncoder, path.join(root, 'base'), { precision: 'float32' });
    await buildTextEncoderGraph(patched, arch.textEncoder, path.join(root, 'full'), { precision: 'float32' });
    const dir = path.join(root, 'patched');
    await linkBaseWeights(path.join(root, 'base', 'weights.pb'), dir);
    await withWeightPatch({ baseLocation: 'base-weights.pb', changed: (n) => patched.patchedNames.has(n) }, () => buildTextEncoderGraph(patched, arch.textEncoder, dir, { precision: 'float32' }));
    const ids = new Int32Array(77).fill(49407);
    ids.set([49406, 320, 736, 2368]);
    const run = async (p: string): Promise<Float32Array> => {
      const s = await ort.InferenceSession.create(path.join(p, 'model.onnx'), { executionProviders: ['cpu'], intraOpNumThreads: 1 });
      try {
        return (await s.run({ input_ids: new ort.Tensor('int32', ids, [1, 77]) })).last_hidden_state!.data as Float32Array;
      } finally {
        await s.release();
      }
    };
    const a = await run(path.join(root, 'full'));
    const b = await run(dir);
    assert.deepEqual(Buffer.from(b.buffer, b.byteOffset, b.byteLength), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    assert.equal((await stat(path.join(dir, 'weights.pb'))).size, 256 * 64 * 4);
  });

  test('odd tensor sizes and transforms: the virtual cursor pads exactly as WeightFileWriter does', async () => {
    // 1001 and 17×100 floats are not multiples of the 64-byte alignment; the transposed one goes through transformDims.
    const shapes = new Map<string, number[]>([['a', [1001]], ['b', [300, 3]], ['c', [17, 100]], ['d', [7, 50]]]);
    const value = (name: string, bumped: boolean): Float32Array =>
      Float32Array.from({ length: shapes.get(name)!.reduce((x, y) => x * y, 1) }, (_, i) => Math.cos(i + name.charCodeAt(0)) + (bumped ? 0.5 : 0));
    const weightsOf = (changed: ReadonlySet<string>): Weights => ({
      has: (n) => shapes.has(n),
      shape: (n) => shapes.get(n)!,
      names: () => shapes.keys(),
      float32: async (n) => value(n, changed.has(n)),
    });
    const build = async (dir: string, w: Weights): Promise<void> => {
      const g = createGraphBuilder('odd');
      const ops = await GraphOps.create(g, w, path.join(dir, 'weights.pb'), 'float32');
      try {
        const outs = [await ops.w.param('a'), await ops.w.param('b', transposeToInOut), await ops.w.param('c'), await ops.w.param('d', transposeToInOut)];
        for (const [i, o] of outs.entries()) {
          g.op('Identity', [o], {}, `y${i}`);
          g.addOutput(`y${i}`, DataType.FLOAT, null);
        }
      } finally {
        await ops.close();
      }
      await g.save(path.join(dir, 'model.onnx'));
    };
    const root = path.join(tmp, 'patch-odd');
    const changed = new Set(['c']);
    await build(path.join(root, 'base'), weightsOf(new Set()));
    await build(path.join(root, 'full'), weightsOf(changed));
    await linkBaseWeights(path.join(root, 'base', 'weights.pb'), path.join(root, 'patched'));
    await withWeightPatch({ baseLocation: 'base-weights.pb', changed: (n) => changed.has(n) }, () => build(path.join(root, 'patched'), weightsOf(changed)));
    const outputs = async (dir: string): Promise<Buffer[]> => {
      const sess = await ort.InferenceSession.create(path.join(dir, 'model.onnx'), { executionProviders: ['cpu'] });
      try {
        const r = await sess.run({});
        return [0, 1, 2, 3].map((i) => Buffer.from((r[`y${i}`]!.data as Float32Array).buffer.slice(0)));
      } finally {
        await sess.release();
      }
    };
    assert.deepEqual(await outputs(path.join(root, 'patched')), await outputs(path.join(root, 'full')));
    assert.equal((await stat(path.join(root, 'patched', 'weights.pb'))).size, 17 * 100 * 4);
  });

  test('a base location outside the model folder is refused (ONNX Runtime would refuse it)', () => {
    assert.throws(() => new WeightPatch({ baseLocation: '../../base/unet/weights.pb', changed: () => false }), /bare file name/);
  });
});
