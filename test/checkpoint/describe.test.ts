import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { componentWeights, describeCheckpoint, describeTextEncoderFile, describeVaeFile, type CheckpointDescription } from '../../server/checkpoint/describe.js';
import { unetKeySpecs, type UnetShape } from '../../server/checkpoint/detect-unet.js';
import { vaeKeySpecs } from '../../server/checkpoint/detect-vae.js';
import { textEncoderKeySpecs } from '../../server/checkpoint/detect-text-encoder.js';
import { emaKeyFor, type KeySpec } from '../../server/checkpoint/key-layouts.js';
import { formatInspectReport } from '../../server/checkpoint/inspect-report.js';
import { openTensorFile } from '../../server/checkpoint/formats/open-tensor-file.js';
import { writeSafetensors, type SafetensorsWriteEntry } from '../../server/checkpoint/formats/safetensors-writer.js';
import { CheckpointError, type StoredDtype, type TensorFile } from '../../server/checkpoint/tensor-file.js';
import type { VaeArchitecture } from '../../server/checkpoint/architecture.js';
import { toFloat16Array } from '../../server/runtime/float16.js';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'checkpoints');
const dir = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-describe-'));
after(() => rm(dir, { recursive: true, force: true }));

/* ------------------------------------------------------------------ building test files */

interface T {
  name: string;
  shape: readonly number[];
  /** Fixed values; else deterministic pseudo-random ones seeded by `seed ?? name`. */
  values?: Float32Array;
  seed?: string;
  dtype?: StoredDtype;
}

function seeded(seed: string, n: number): Float32Array {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    h = Math.imul(h ^ (h >>> 15), 2246822507) ^ i;
    h = Math.imul(h ^ (h >>> 13), 3266489909);
    out[i] = (((h >>> 0) / 2 ** 32) * 2 - 1) * 0.02;
  }
  return out;
}

const count = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const valuesOf = (t: T): Float32Array => t.values ?? seeded(t.seed ?? t.name, count(t.shape));

let fileNo = 0;
async function write(tensors: readonly T[], metadata?: Record<string, string>): Promise<string> {
  const file = path.join(dir, `t${fileNo++}.safetensors`);
  const entries: SafetensorsWriteEntry[] = tensors.map((t) => {
    const dtype = t.dtype ?? 'F32';
    return { name: t.name, dtype, shape: t.shape, data: () => (dtype === 'F16' ? toFloat16Array(valuesOf(t)) : valuesOf(t)) };
  });
  await writeSafetensors(file, entries, metadata);
  return file;
}

async function withFile<R>(file: string, fn: (f: TensorFile) => Promise<R>): Promise<R> {
  const f = await openTensorFile(file);
  try {
    return await fn(f);
  } finally {
    await f.close();
  }
}

const describeFile = (file: string, sidecarYaml: string | null = null): Promise<CheckpointDescription> =>
  withFile(file, (f) => describeCheckpoint(f, { sidecarYaml }));

const prefixed = (prefix: string, specs: readonly KeySpec[], dtype?: StoredDtype): T[] =>
  specs.map((s) => ({ name: prefix + s.name, shape: s.shape, ...(dtype ? { dtype } : {}) }));

const SD1_UNET: UnetShape = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 32,
  channelMult: [1, 2, 2],
  numResBlocks: 2,
  attentionLevels: [true, true, false],
  transformerDepth: 1,
  contextDim: 64,
  linearProjection: false,
};
const SD2_UNET: UnetShape = {
  inChannels: 4,
  outChannels: 4,
  modelChannels: 64,
  channelMult: [1, 2],
  numResBlocks: 1,
  attentionLevels: [true, true],
  transformerDepth: 1,
  contextDim: 64,
  linearProjection: true,
};
const TINY_VAE: VaeArchitecture = { ch: 32, chMult: [1, 2], numResBlocks: 1, zChannels: 4, outChannels: 3, scalingFactor: 0.18215, hasEncoder: true };
const CLIP = { kind: 'clip', width: 64, layers: 2, heads: 1, vocabSize: 300, maxPositions: 77, activation: 'quick_gelu', intermediate: 256 } as const;
const OPEN_CLIP = { kind: 'open-clip', width: 64, layers: 3, heads: 1, vocabSize: 300, maxPositions: 77, activation: 'gelu', intermediate: 256 } as const;

const LDM_BUFFERS: T[] = [
  { name: 'betas', shape: [1000] },
  { name: 'alphas_cumprod', shape: [1000] },
  { name: 'alphas_cumprod_prev', shape: [1000] },
  { name: 'posterior_mean_coef1', shape: [1000] },
];

function sd1Tensors(opts: { ema?: 'complete' | 'incomplete'; unet?: UnetShape; oldClip?: boolean } = {}): T[] {
  const unet = prefixed('model.diffusion_model.', unetKeySpecs(opts.unet ?? SD1_UNET));
  const out: T[] = [
    ...LDM_BUFFERS,
    ...unet,
    ...prefixed('first_stage_model.', vaeKeySpecs(TINY_VAE)),
    ...textEncoderKeySpecs(CLIP).map((s) => ({
      name: 'cond_stage_model.transformer.' + (opts.oldClip ? s.name.replace(/^text_model\./, '') : s.name),
      shape: s.shape,
    })),
    { name: 'cond_stage_model.transformer.text_model.embeddings.position_ids', shape: [1, 77], values: Float32Array.from({ length: 77 }, (_, i) => i) },
  ];
  if (opts.ema) {
    out.push({ name: 'model_ema.decay', shape: [] }, { name: 'model_ema.num_updates', shape: [] });
    const twins = unet.map((t) => ({ name: emaKeyFor(t.name.slice('model.diffusion_model.'.length)), shape: t.shape, seed: `ema:${t.name}` }));
    out.push(...(opts.ema === 'incomplete' ? twins.slice(1) : twins));
  }
  return out;
}

/** An SD-2 file whose v-prediction probe norm1.bias has the given population std. */
function sd2Tensors(probeStd: number): T[] {
  const unet = prefixed('model.diffusion_model.', unetKeySpecs(SD2_UNET)).map((t) => {
    if (!/output_blocks\.3\.1\.transformer_blocks\.0\.norm1\.bias$/.test(t.name)) return t;
    const n = t.shape[0]!;
    return { ...t, values: Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? probeStd : -probeStd)) };
  });
  return [
    ...unet,
    ...prefixed('first_stage_model.', vaeKeySpecs(TINY_VAE), 'F16'),
    ...prefixed('cond_stage_model.model.', textEncoderKeySpecs(OPEN_CLIP)),
    { name: 'cond_stage_model.model.text_projection', shape: [64, 64] },
    { name: 'cond_stage_model.model.logit_scale', shape: [] },
  ];
}

/** diffusers AutoencoderKL names for LDM VAE names, written here independently of the reader's renamer. */
function ldmVaeToDiffusers(name: string, levels: number, oldAttention: boolean): string {
  const attn: Record<string, string> = oldAttention
    ? { norm: 'group_norm', q: 'query', k: 'key', v: 'value', proj_out: 'proj_attn' }
    : { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };
  return name
    .replace(/^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\./, (_, side: string, w: string) => `${side}.mid_block.attentions.0.${attn[w]}.`)
    .replace(/^(encoder|decoder)\.mid\.block_(\d)\./, (_, side: string, i: string) => `${side}.mid_block.resnets.${Number(i) - 1}.`)
    .replace(/^encoder\.down\.(\d+)\.block\.(\d+)\./, 'encoder.down_blocks.$1.resnets.$2.')
    .replace(/^encoder\.down\.(\d+)\.downsample\.conv\./, 'encoder.down_blocks.$1.downsamplers.0.conv.')
    .replace(/^decoder\.up\.(\d+)\.block\.(\d+)\./, (_, l: string, j: string) => `decoder.up_blocks.${levels - 1 - Number(l)}.resnets.${j}.`)
    .replace(/^decoder\.up\.(\d+)\.upsample\.conv\./, (_, l: string) => `decoder.up_blocks.${levels - 1 - Number(l)}.upsamplers.0.conv.`)
    .replace(/^(encoder|decoder)\.norm_out\./, '$1.conv_norm_out.')
    .replace(/\.nin_shortcut\./, '.conv_shortcut.');
}

/* ------------------------------------------------------------------ key lists against the real models */

test('the expected-key lists have the real SD-1.5 / SD-2 tensor counts and names', () => {
  const sd15: UnetShape = { ...SD1_UNET, modelChannels: 320, channelMult: [1, 2, 4, 4], attentionLevels: [true, true, true, false], contextDim: 768 };
  const specs = unetKeySpecs(sd15);
  assert.equal(specs.length, 686); // v1-5-pruned: 686 model.diffusion_model.* tensors
  const byName = new Map(specs.map((s) => [s.name, s.shape]));
  assert.deepEqual(byName.get('input_blocks.4.0.skip_connection.weight'), [640, 320, 1, 1]);
  assert.deepEqual(byName.get('output_blocks.3.0.skip_connection.weight'), [1280, 2560, 1, 1]);
  assert.deepEqual(byName.get('output_blocks.2.1.conv.weight'), [1280, 1280, 3, 3]);
  assert.ok(byName.has('output_blocks.5.2.conv.weight') && byName.has('output_blocks.8.2.conv.weight'));
  assert.deepEqual(byName.get('middle_block.1.proj_in.weight'), [1280, 1280, 1, 1]);
  assert.deepEqual(byName.get('input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight'), [320, 768]);
  assert.deepEqual(byName.get('input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight'), [2560, 320]);
  assert.deepEqual(byName.get('time_embed.0.weight'), [1280, 320]);
  assert.deepEqual(byName.get('out.2.weight'), [4, 320, 3, 3]);
  assert.equal(unetKeySpecs({ ...sd15, contextDim: 1024, linearProjection: true }).length, 686);
  const vae = vaeKeySpecs({ ...TINY_VAE, ch: 128, chMult: [1, 2, 4, 4], numResBlocks: 2 });
  assert.equal(vae.length, 248); // first_stage_model.* of v1-5
  const vaeNames = new Map(vae.map((s) => [s.name, s.shape]));
  assert.deepEqual(vaeNames.get('decoder.up.0.block.0.nin_shortcut.weight'), [128, 256, 1, 1]);
  assert.deepEqual(vaeNames.get('encoder.down.1.block.0.nin_shortcut.weight'), [256, 128, 1, 1]);
  assert.deepEqual(vaeNames.get('decoder.conv_in.weight'), [512, 4, 3, 3]);
  assert.deepEqual(vaeNames.get('encoder.conv_out.weight'), [8, 512, 3, 3]);
  assert.ok(vaeNames.has('decoder.up.3.upsample.conv.weight') && !vaeNames.has('decoder.up.0.upsample.conv.weight'));
  // CLIP ViT-L/14 text: 196 tensors besides position_ids; OpenCLIP ViT-H text: 292 besides text_projection/logit_scale.
  assert.equal(textEncoderKeySpecs({ ...CLIP, width: 768, layers: 12, heads: 12, vocabSize: 49408, intermediate: 3072 }).length, 196);
  assert.equal(textEncoderKeySpecs({ ...OPEN_CLIP, width: 1024, layers: 24, heads: 16, vocabSize: 49408, intermediate: 4096 }).length, 292);
});

/* ------------------------------------------------------------------ whole checkpoints */

test('SD-1 LDM with EMA: architecture field by field, EMA, buffers, unknown keys, dtypes', async () => {
  const file = await write([...sd1Tensors({ ema: 'complete' }), { name: 'some_trainer_state.step', shape: [1] }]);
  await withFile(file, async (f) => {
    const d = await describeCheckpoint(f);
    assert.equal(d.unsupported, null);
    assert.equal(d.layout, 'ldm');
    assert.equal(d.family, 'sd1');
    assert.equal(d.format, 'safetensors');
    assert.equal(d.tensorCount, f.tensors.size);
    assert.deepEqual(d.dtypes, { F32: f.tensors.size });
    const a = d.architecture!;
    assert.equal(a.family, 'sd1');
    assert.deepEqual(a.unet, { ...SD1_UNET, numHeads: 8, headChannels: null });
    assert.deepEqual(a.textEncoder, { kind: 'clip', width: 64, layers: 2, heads: 1, vocabSize: 300, maxPositions: 77, activation: 'quick_gelu' });
    assert.deepEqual(a.vae, TINY_VAE);
    assert.equal(d.hasEma, true);
    assert.deepEqual(d.prediction.value, 'epsilon');
    assert.deepEqual(d.unknownKeys, { count: 1, first: ['some_trainer_state.step'] });

    const plain = componentWeights(f, d, 'unet', { ema: false });
    const ema = componentWeights(f, d, 'unet', { ema: true });
    const k = 'input_blocks.1.1.proj_in.weight';
    assert.deepEqual(ema.shape(k), [32, 32, 1, 1]);
    assert.deepEqual(await ema.float32(k), seeded('ema:model.diffusion_model.' + k, 32 * 32));
    assert.deepEqual(await plain.float32(k), seeded('model.diffusion_model.' + k, 32 * 32));
    assert.notDeepEqual(await ema.float32(k), await plain.float32(k));
    assert.deepEqual([...ema.names()].sort(), [...plain.names()].sort());
    assert.equal([...plain.names()].length, unetKeySpecs(SD1_UNET).length);

    const text = componentWeights(f, d, 'textEncoder', { ema: true });
    assert.ok(text.has('text_model.encoder.layers.1.mlp.fc2.weight'));
    assert.ok(!text.has('text_model.embeddings.position_ids'));
    const vae = componentWeights(f, d, 'vae', { ema: false });
    assert.deepEqual(vae.shape('decoder.mid.attn_1.q.weight'), [64, 64, 1, 1]);
    assert.throws(() => vae.shape('nope'), CheckpointError);
  });
});

test('EMA: incomplete or absent twins give hasEma false and a clear error when asked for', async () => {
  const incomplete = await write(sd1Tensors({ ema: 'incomplete' }));
  await withFile(incomplete, async (f) => {
    const d = await describeCheckpoint(f);
    assert.equal(d.unsupported, null);
    assert.equal(d.hasEma, false);
    assert.throws(() => componentWeights(f, d, 'unet', { ema: true }), (e: unknown) => {
      assert.ok(e instanceof CheckpointError);
      assert.match(e.message, /EMA weights are incomplete: \d+ of \d+ UNet tensors .* first missing model_ema\.diffusion_model/);
      return true;
    });
    assert.ok(componentWeights(f, d, 'unet', { ema: false }).has('out.2.weight'));
  });
  const none = await write(sd1Tensors());
  await withFile(none, async (f) => {
    const d = await describeCheckpoint(f);
    assert.equal(d.hasEma, false);
    assert.throws(() => componentWeights(f, d, 'unet', { ema: true }), /has no EMA weights \(model_ema\.\*\)/);
  });
});

test('very old SD-1 files without text_model. map to the canonical CLIP names', async () => {
  const d = await withFile(await write(sd1Tensors({ oldClip: true })), async (f) => {
    const d = await describeCheckpoint(f);
    const w = componentWeights(f, d, 'textEncoder', { ema: false });
    assert.ok(w.has('text_model.embeddings.token_embedding.weight'));
    assert.deepEqual(w.shape('text_model.embeddings.token_embedding.weight'), [300, 64]);
    return d;
  });
  assert.equal(d.unsupported, null);
  assert.equal(d.architecture?.textEncoder.layers, 2);
});

test('SD-2 LDM: OpenCLIP, 64-wide heads, linear projections; the v-prediction probe decides the family', async () => {
  const v = await describeFile(await write(sd2Tensors(0.2)));
  assert.equal(v.unsupported, null);
  assert.deepEqual(v.architecture!.unet, { ...SD2_UNET, numHeads: null, headChannels: 64 });
  assert.deepEqual(v.architecture!.textEncoder, { kind: 'open-clip', width: 64, layers: 3, heads: 1, vocabSize: 300, maxPositions: 77, activation: 'gelu' });
  assert.equal(v.prediction.value, 'v_prediction');
  assert.match(v.prediction.reason, /output_blocks\.3\.1\.transformer_blocks\.0\.norm1\.bias is 0\.2000, above 0\.09/);
  assert.equal(v.family, 'sd2-v');
  assert.equal(v.architecture!.family, 'sd2-v');
  assert.deepEqual(v.unknownKeys, { count: 0, first: [] });
  assert.equal(v.dtypes.F16, vaeKeySpecs(TINY_VAE).length);

  const eps = await describeFile(await write(sd2Tensors(0.05)));
  assert.equal(eps.prediction.value, 'epsilon');
  assert.match(eps.prediction.reason, /0\.05000, not above 0\.09/);
  assert.equal(eps.family, 'sd2');
});

test('prediction: a sidecar YAML comes first, then safetensors metadata, then the heuristic', async () => {
  const lowStd = await write(sd2Tensors(0.01));
  const yaml = 'model:\n  target: ldm.models.diffusion.ddpm.LatentDiffusion\n  params:\n    parameterization: "v"\n';
  const side = await describeFile(lowStd, yaml);
  assert.equal(side.prediction.value, 'v_prediction');
  assert.match(side.prediction.reason, /sidecar YAML says parameterization: "v"/);
  assert.equal(side.family, 'sd2-v');

  const meta = await describeFile(await write(sd2Tensors(0.01), { 'modelspec.prediction_type': 'v' }));
  assert.equal(meta.prediction.value, 'v_prediction');
  assert.match(meta.prediction.reason, /metadata says modelspec\.prediction_type: v/);

  const metaEps = await describeFile(await write(sd2Tensors(0.3), { prediction_type: 'epsilon' }));
  assert.equal(metaEps.prediction.value, 'epsilon');
  assert.equal(metaEps.family, 'sd2');

  const odd = await describeFile(await write(sd2Tensors(0.3), { prediction_type: 'flow' }));
  assert.equal(odd.prediction.value, 'v_prediction');
  assert.match(odd.prediction.reason, /"flow" is not a prediction type FuseGraph knows, ignored/);

  const sd1 = await write(sd1Tensors());
  assert.equal((await describeFile(sd1)).prediction.value, 'epsilon');
  const sd1v = await describeFile(sd1, 'model:\n  params:\n    parameterization: v # v model\n');
  assert.equal(sd1v.prediction.value, 'v_prediction');
  assert.equal(sd1v.family, 'sd1');
  assert.equal((await describeFile(sd1, 'model:\n  params:\n    parameterization: "eps"\n')).prediction.value, 'epsilon');
});

/* ------------------------------------------------------------------ refused files */

test('unsupported: SDXL base and refiner, inpainting, depth, unCLIP, no UNet, a VAE as a model', async () => {
  const xlUnet: T[] = [
    { name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [32, 4, 3, 3] },
    { name: 'model.diffusion_model.label_emb.0.0.weight', shape: [128, 2816] },
    { name: 'model.diffusion_model.out.2.weight', shape: [4, 32, 3, 3] },
  ];
  const xl = await describeFile(
    await write([
      ...xlUnet,
      { name: 'conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight', shape: [300, 64] },
      { name: 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias', shape: [64] },
      ...prefixed('first_stage_model.', vaeKeySpecs(TINY_VAE)),
    ]),
  );
  assert.match(xl.unsupported!, /^not supported yet: SDXL base checkpoint/);
  assert.equal(xl.architecture, null);
  assert.equal(xl.family, null);
  assert.equal(xl.unknownKeys.count, 0);

  const refiner = await describeFile(
    await write([
      { name: 'model.diffusion_model.input_blocks.0.0.weight', shape: [32, 4, 3, 3] },
      { name: 'model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight', shape: [64, 1280] },
      { name: 'conditioner.embedders.0.model.token_embedding.weight', shape: [300, 1280] },
    ]),
  );
  assert.match(refiner.unsupported!, /^not supported yet: SDXL refiner checkpoint/);

  const xlUnetOnly = await describeFile(await write(xlUnet));
  assert.match(xlUnetOnly.unsupported!, /^not supported yet: SDXL base checkpoint \(label_emb, adm_in_channels 2816\)/);

  const unclip = await describeFile(await write([...xlUnet.slice(0, 1), { name: 'model.diffusion_model.label_emb.0.0.weight', shape: [128, 1024] }, { name: 'noise_augmentor.betas', shape: [1000] }]));
  assert.match(unclip.unsupported!, /^not supported yet: unCLIP checkpoint \(label_emb, adm_in_channels 1024\)/);

  const inpaint = sd1Tensors().map((t) => (t.name === 'model.diffusion_model.input_blocks.0.0.weight' ? { ...t, shape: [32, 9, 3, 3] } : t));
  const ip = await describeFile(await write(inpaint));
  assert.match(ip.unsupported!, /^not supported yet: inpainting checkpoint \(9 UNet input channels/);
  assert.equal(ip.architecture, null);

  const depth = sd1Tensors().map((t) => (t.name === 'model.diffusion_model.input_blocks.0.0.weight' ? { ...t, shape: [32, 5, 3, 3] } : t));
  assert.match((await describeFile(await write([...depth, { name: 'depth_model.model.pretrained.layer1.0.weight', shape: [8] }]))).unsupported!, /^not supported yet: depth-conditioned checkpoint \(5 UNet input channels, depth_model\.\*\)/);

  const junk = await describeFile(await write([{ name: 'foo.weight', shape: [3, 3] }, { name: 'bar', shape: [2] }]));
  assert.match(junk.unsupported!, /^not a Stable Diffusion checkpoint: no UNet weights \(model\.diffusion_model\.\*\) among its 2 tensors/);
  assert.equal(junk.layout, 'unknown');
  assert.equal(junk.unknownKeys.count, 2);

  const lora = await describeFile(await write([{ name: 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', shape: [4, 32] }]));
  assert.match(lora.unsupported!, /this looks like a LoRA/);

  const vaeAsModel = await describeFile(await write(prefixed('', vaeKeySpecs(TINY_VAE))));
  assert.equal(vaeAsModel.layout, 'vae');
  assert.equal(vaeAsModel.unsupported, "this is a VAE, not a model: use it as LoadModel's vae");
  assert.deepEqual(vaeAsModel.standaloneVae, TINY_VAE);
});

test('inconsistent files are refused naming what is missing or misshapen', async () => {
  const drop = 'model.diffusion_model.output_blocks.4.1.transformer_blocks.0.attn2.to_v.weight';
  const missing = await describeFile(await write(sd1Tensors().filter((t) => t.name !== drop)));
  assert.equal(missing.architecture, null);
  assert.match(missing.unsupported!, new RegExp(`^inconsistent UNet: missing 1 tensor: ${drop.replace(/\./g, '\\.')} \\(the detected architecture: model_channels 32`));

  const badShape = sd1Tensors().map((t) => (t.name === 'first_stage_model.decoder.mid.block_1.conv1.weight' ? { ...t, shape: [64, 64, 1, 1] } : t));
  assert.match((await describeFile(await write(badShape))).unsupported!, /^inconsistent VAE: 1 with the wrong shape: first_stage_model\.decoder\.mid\.block_1\.conv1\.weight is \[64, 64, 1, 1\], expected \[64, 64, 3, 3\]/);

  const noVae = await describeFile(await write(sd1Tensors().filter((t) => !t.name.startsWith('first_stage_model.'))));
  assert.match(noVae.unsupported!, /^not supported yet: a checkpoint without a VAE/);

  const wideContext = sd1Tensors({ unet: { ...SD1_UNET, contextDim: 96 } });
  assert.match((await describeFile(await write(wideContext))).unsupported!, /UNet's cross-attention takes 96-wide context but the text encoder is 64 wide/);
});

/* ------------------------------------------------------------------ standalone VAEs */

test('VAE files: bare, first_stage_model. and diffusers layouts give one architecture and the same values', async () => {
  const specs = vaeKeySpecs(TINY_VAE);
  const bare = await write(specs.map((s) => ({ name: s.name, shape: s.shape })));
  const ldmPrefixed = await write(specs.map((s) => ({ name: `first_stage_model.${s.name}`, shape: s.shape, seed: s.name })));
  const diffusers = (old: boolean): T[] =>
    specs.map((s) => {
      const linear = /mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(s.name);
      return { name: ldmVaeToDiffusers(s.name, TINY_VAE.chMult.length, old), shape: linear ? s.shape.slice(0, 2) : s.shape, seed: s.name };
    });
  const diff = await write(diffusers(false));
  const diffOld = await write(diffusers(true));
  const decoderOnly = await write(specs.filter((s) => !/^(encoder\.|quant_conv\.)/.test(s.name)).map((s) => ({ name: `vae.${s.name}`, shape: s.shape })));

  const refWeights = await withFile(bare, async (f) => {
    const { architecture, weights } = describeVaeFile(f);
    assert.deepEqual(architecture, TINY_VAE);
    const out = new Map<string, Float32Array>();
    for (const n of weights.names()) out.set(n, await weights.float32(n));
    return out;
  });
  assert.equal(refWeights.size, specs.length);
  for (const file of [ldmPrefixed, diff, diffOld]) {
    await withFile(file, async (f) => {
      const { architecture, weights } = describeVaeFile(f);
      assert.deepEqual(architecture, TINY_VAE);
      assert.deepEqual([...weights.names()].sort(), [...refWeights.keys()].sort());
      for (const s of specs) {
        assert.deepEqual(weights.shape(s.name), s.shape, s.name);
        assert.deepEqual(await weights.float32(s.name), refWeights.get(s.name), s.name);
      }
    });
  }
  // The LDM decoder's up.0 is diffusers' last up block.
  await withFile(diff, async (f) => {
    assert.ok(f.tensors.has('decoder.up_blocks.1.resnets.0.conv_shortcut.weight'));
    assert.deepEqual(describeVaeFile(f).weights.shape('decoder.up.0.block.0.nin_shortcut.weight'), [32, 64, 1, 1]);
    assert.deepEqual(describeVaeFile(f).weights.shape('decoder.mid.attn_1.proj_out.weight'), [64, 64, 1, 1]);
    const d = await describeCheckpoint(f);
    assert.equal(d.layout, 'vae');
    assert.equal(d.unknownKeys.count, 0);
  });
  await withFile(decoderOnly, async (f) => assert.deepEqual(describeVaeFile(f).architecture, { ...TINY_VAE, hasEncoder: false }));
  // A whole checkpoint's VAE, and files with no VAE.
  await withFile(await write(sd1Tensors()), async (f) => assert.deepEqual(describeVaeFile(f).architecture, TINY_VAE));
  await withFile(await write([{ name: 'foo', shape: [1] }]), async (f) => assert.throws(() => describeVaeFile(f), /not a VAE: no encoder\.\* \/ decoder\.\* tensors/));
  const broken = await write(specs.filter((s) => s.name !== 'decoder.up.1.block.1.conv2.bias').map((s) => ({ name: s.name, shape: s.shape })));
  await withFile(broken, async (f) => assert.throws(() => describeVaeFile(f), /inconsistent VAE: missing 1 tensor: decoder\.up\.1\.block\.1\.conv2\.bias/));
});

/* ------------------------------------------------------------------ diffusers single files */

/** diffusers UNet2DConditionModel names for LDM names (the tiny SD-1 UNet: 3 levels, 2 res blocks, attention at 0 and 1). */
function ldmUnetToDiffusers(name: string): string {
  const resnet = (r: string): string =>
    r.replace(/^in_layers\.0\./, 'norm1.').replace(/^in_layers\.2\./, 'conv1.').replace(/^emb_layers\.1\./, 'time_emb_proj.').replace(/^out_layers\.0\./, 'norm2.').replace(/^out_layers\.3\./, 'conv2.').replace(/^skip_connection\./, 'conv_shortcut.');
  const nres = 2;
  let m = /^input_blocks\.(\d+)\.(\d)\.(.*)$/.exec(name);
  if (m && m[1] !== '0') {
    const n = Number(m[1]) - 1;
    const level = Math.floor(n / (nres + 1));
    const j = n % (nres + 1);
    if (j === nres) return `down_blocks.${level}.downsamplers.0.conv.${m[3]!.replace(/^op\./, '')}`;
    return m[2] === '0' ? `down_blocks.${level}.resnets.${j}.${resnet(m[3]!)}` : `down_blocks.${level}.attentions.${j}.${m[3]}`;
  }
  m = /^middle_block\.(\d)\.(.*)$/.exec(name);
  if (m) return m[1] === '1' ? `mid_block.attentions.0.${m[2]}` : `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${resnet(m[2]!)}`;
  m = /^output_blocks\.(\d+)\.(\d)\.(.*)$/.exec(name);
  if (m) {
    const n = Number(m[1]);
    const u = Math.floor(n / (nres + 1));
    const j = n % (nres + 1);
    if (m[3]!.startsWith('conv.')) return `up_blocks.${u}.upsamplers.0.${m[3]}`;
    return m[2] === '0' ? `up_blocks.${u}.resnets.${j}.${resnet(m[3]!)}` : `up_blocks.${u}.attentions.${j}.${m[3]}`;
  }
  return name
    .replace(/^input_blocks\.0\.0\./, 'conv_in.')
    .replace(/^time_embed\.0\./, 'time_embedding.linear_1.')
    .replace(/^time_embed\.2\./, 'time_embedding.linear_2.')
    .replace(/^out\.0\./, 'conv_norm_out.')
    .replace(/^out\.2\./, 'conv_out.');
}

test('diffusers single file (SD-1): unet./vae./text_encoder. map to the LDM canonical names and values', async () => {
  const unet = unetKeySpecs(SD1_UNET);
  const file = await write([
    ...unet.map((s) => ({ name: `unet.${ldmUnetToDiffusers(s.name)}`, shape: s.shape, seed: s.name })),
    ...vaeKeySpecs(TINY_VAE).map((s) => {
      const linear = /mid\.attn_1\.(q|k|v|proj_out)\.weight$/.test(s.name);
      return { name: `vae.${ldmVaeToDiffusers(s.name, 2, false)}`, shape: linear ? s.shape.slice(0, 2) : s.shape };
    }),
    ...prefixed('text_encoder.', textEncoderKeySpecs(CLIP)),
  ]);
  await withFile(file, async (f) => {
    assert.ok(f.tensors.has('unet.up_blocks.1.upsamplers.0.conv.weight') && f.tensors.has('unet.down_blocks.1.attentions.1.proj_in.weight'));
    const d = await describeCheckpoint(f);
    assert.equal(d.unsupported, null);
    assert.equal(d.layout, 'diffusers');
    assert.deepEqual(d.architecture!.unet, { ...SD1_UNET, numHeads: 8, headChannels: null });
    assert.deepEqual(d.unknownKeys, { count: 0, first: [] });
    const w = componentWeights(f, d, 'unet', { ema: false });
    assert.equal([...w.names()].length, unet.length);
    for (const k of ['output_blocks.5.2.conv.weight', 'input_blocks.3.0.op.weight', 'output_blocks.3.0.skip_connection.weight', 'middle_block.2.emb_layers.1.bias']) {
      assert.deepEqual(await w.float32(k), seeded(k, count(w.shape(k))), k);
    }
    assert.throws(() => componentWeights(f, d, 'unet', { ema: true }), /only LDM checkpoints \(model_ema\.\*\) carry them/);
  });
});

/* ------------------------------------------------------------------ report */

test('inspect report: family, layout, EMA, dtypes, size, architecture, prediction, unknown keys', async () => {
  const d = await describeFile(await write([...sd1Tensors({ ema: 'complete' }), { name: 'extra.thing', shape: [2] }]));
  const text = formatInspectReport(d);
  for (const want of [
    /family:\s+SD-1\.x/,
    /key layout:\s+LDM/,
    /EMA weights:\s+present/,
    /dtypes:\s+F32 ×\d+/,
    /size:\s+[\d.]+ (KiB|MiB) \(\d+ bytes\)/,
    /UNet:\s+4→4 channels, model_channels 32, channel_mult \[1, 2, 2\], 2 res blocks per level, attention at levels \[0, 1\], transformer depth 1, 8 heads, context 64, conv proj/,
    /text encoder:\s+CLIP width 64, 2 layers, 1 head, vocab 300, 77 positions, quick_gelu/,
    /VAE:\s+ch 32, ch_mult \[1, 2\]/,
    /prediction:\s+epsilon \(/,
    /unknown keys:\s+1: extra\.thing/,
  ]) {
    assert.match(text, want);
  }
  const bad = formatInspectReport(await describeFile(await write(sd1Tensors().map((t) => (t.name.endsWith('input_blocks.0.0.weight') ? { ...t, shape: [32, 9, 3, 3] } : t)))));
  assert.match(bad, /unsupported:\s+not supported yet: inpainting/);
});

/* ------------------------------------------------------------------ the committed fixtures */

const fixture = (name: string): string => path.join(FIXTURES, name);
const TINY_SD1_ARCH = {
  family: 'sd1',
  unet: { ...SD1_UNET, numHeads: 8, headChannels: null },
  vae: TINY_VAE,
  textEncoder: { kind: 'clip', width: 64, layers: 2, heads: 1, vocabSize: 49408, maxPositions: 77, activation: 'quick_gelu' },
};

test('fixture tiny-sd1.ckpt: LDM torch checkpoint with EMA', { skip: !existsSync(fixture('tiny-sd1.ckpt')) }, async () => {
  await withFile(fixture('tiny-sd1.ckpt'), async (f) => {
    const d = await describeCheckpoint(f);
    assert.equal(d.format, 'torch');
    assert.equal(d.unsupported, null);
    assert.deepEqual(d.architecture, TINY_SD1_ARCH);
    assert.equal(d.hasEma, true);
    assert.equal(d.prediction.value, 'epsilon');
    assert.deepEqual(d.unknownKeys, { count: 0, first: [] });
    const k = 'output_blocks.0.0.out_layers.3.weight';
    const ema = await componentWeights(f, d, 'unet', { ema: true }).float32(k);
    assert.deepEqual(ema, await f.readFloat32(emaKeyFor(k)));
    assert.notDeepEqual(ema, await f.readFloat32(`model.diffusion_model.${k}`));
  });
});

test('fixture tiny-sd1-fp16.safetensors: same architecture, F16, no EMA', { skip: !existsSync(fixture('tiny-sd1-fp16.safetensors')) }, async () => {
  const d = await describeFile(fixture('tiny-sd1-fp16.safetensors'));
  assert.deepEqual(d.architecture, TINY_SD1_ARCH);
  assert.equal(d.hasEma, false);
  assert.ok((d.dtypes.F16 ?? 0) > 600);
});

test('fixture tiny-sd2.safetensors: OpenCLIP, 64-wide heads, linear proj; what the v heuristic says', { skip: !existsSync(fixture('tiny-sd2.safetensors')) }, async () => {
  const d = await describeFile(fixture('tiny-sd2.safetensors'));
  assert.equal(d.unsupported, null);
  assert.deepEqual(d.architecture!.unet, { ...SD2_UNET, numHeads: null, headChannels: 64 });
  assert.deepEqual(d.architecture!.textEncoder, { kind: 'open-clip', width: 64, layers: 3, heads: 1, vocabSize: 49408, maxPositions: 77, activation: 'gelu' });
  assert.deepEqual(d.architecture!.vae, TINY_VAE);
  // Random-init norms: ComfyUI's rule sees std 0.109 > 0.09 and calls it v-prediction (hence sd2-v), naming the key.
  assert.match(d.prediction.reason, /output_blocks\.3\.1\.transformer_blocks\.0\.norm1\.bias/);
  assert.equal(d.family, d.prediction.value === 'v_prediction' ? 'sd2-v' : 'sd2');
  assert.equal((await describeFile(fixture('tiny-sd2.safetensors'), 'parameterization: eps\n')).family, 'sd2');
});

test('fixture tiny-vae.safetensors and tiny-clip-multihead.safetensors', { skip: !existsSync(fixture('tiny-vae.safetensors')) }, async () => {
  await withFile(fixture('tiny-vae.safetensors'), async (f) => {
    assert.deepEqual(describeVaeFile(f).architecture, TINY_VAE);
    const d = await describeCheckpoint(f);
    assert.equal(d.layout, 'vae');
    assert.match(d.unsupported!, /this is a VAE, not a model/);
  });
  if (existsSync(fixture('tiny-clip-multihead.safetensors'))) {
    await withFile(fixture('tiny-clip-multihead.safetensors'), async (f) => {
      const d = await describeCheckpoint(f);
      assert.match(d.unsupported!, /^not a Stable Diffusion checkpoint: no UNet weights \(model\.diffusion_model\.\*\), only a text encoder/);
      const { architecture, weights } = describeTextEncoderFile(f);
      assert.deepEqual(architecture, { kind: 'clip', width: 128, layers: 2, heads: 2, vocabSize: 1000, maxPositions: 77, activation: 'quick_gelu' });
      assert.deepEqual(weights.shape('text_model.encoder.layers.1.mlp.fc1.weight'), f.tensors.get('cond_stage_model.transformer.text_model.encoder.layers.1.mlp.fc1.weight')!.shape);
    });
  }
});
