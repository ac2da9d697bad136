// Writes tiny, seeded Stable-Diffusion-shaped ONNX folders. The graphs are not
// trained networks; they only reproduce the I/O contract of the real exports
// (names, dtypes, ranks, symbolic dims, external data, folder/config files) and
// respond to every input, so code under test runs real ONNX Runtime inference.

import { existsSync } from 'node:fs';
import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DataType, GraphBuilder, attr, type DataTypeCode, type Dim } from '../../server/onnx-writer/graph-builder.js';
import { writeByteLevelTokenizer } from './byte-level-tokenizer.js';

export const SEQUENCE_LENGTH = 77;
/** Token ids are folded into a table this size so the text encoder stays tiny while every id still matters. */
export const TOKEN_TABLE_SIZE = 251;

export type TinyDtype = 'float32' | 'float16';
export type TinyTimestepType = 'float32' | 'float16' | 'int64';
export type TinyExternalData = 'weights.pb' | 'model.onnx_data' | 'model.onnx.data';
export type TinyLayout = 'diffusers' | 'optimum';

export interface TinyTimestepSpec {
  type: TinyTimestepType;
  rank: 0 | 1;
  /** Symbolic name of the single dim when rank is 1. Default: "batch" (diffusers layout) or "steps" (optimum layout). */
  dim?: string;
}

export interface TinyModelOptions {
  /**
   * Folder with vocab.json, merges.txt, special_tokens_map.json, tokenizer_config.json to copy, or 'byte-level' for
   * a generated merge-free CLIP tokenizer. Default: <repo>/server/sd/clip-tokenizer.
   */
  tokenizerDir?: string;
  seed?: number;
  /** Text-encoder width = UNet cross-attention width. Default 32. */
  hidden?: number;
  /** Default 4. */
  latentChannels?: number;
  /** VAE upsampling factor (2, 4 or 8). Default 8. */
  vaeFactor?: number;
  /** float16: every float graph input/output is float16; the math runs in float32 between Casts so the CPU EP can run it. */
  dtype?: TinyDtype;
  /** Default int32. */
  inputIdsType?: 'int32' | 'int64';
  /** Default float32 rank 1 (float16 rank 1 when dtype is float16). */
  timestep?: TinyTimestepSpec;
  /** Side file for the UNet weights; null keeps them inline. Default null. */
  externalData?: TinyExternalData | null;
  /** optimum adds config.json to every part folder and writes an optimum-style model_index.json. Default diffusers. */
  layout?: TinyLayout;
  /** UNet feature width F. Default 16. */
  unetWidth?: number;
  /** Extra residual F→F 3×3 conv blocks in the UNet. Default 0 when unetWidth ≤ 16, else 2. */
  unetDepth?: number;
  /** vae_decoder/config.json scaling_factor. Default 0.18215. */
  scalingFactor?: number;
  /** Shallow-merged over the SD1 PNDMScheduler config. */
  schedulerConfig?: Record<string, unknown>;
}

export interface ResolvedTinyModelOptions {
  tokenizerDir: string;
  seed: number;
  hidden: number;
  latentChannels: number;
  vaeFactor: 2 | 4 | 8;
  dtype: TinyDtype;
  inputIdsType: 'int32' | 'int64';
  timestep: Required<TinyTimestepSpec>;
  externalData: TinyExternalData | null;
  layout: TinyLayout;
  unetWidth: number;
  unetDepth: number;
  scalingFactor: number;
  schedulerConfig: Record<string, unknown>;
}

export interface TinyVariant {
  name: string;
  /** Which real exporter this mimics. */
  description: string;
  options: Omit<TinyModelOptions, 'tokenizerDir'>;
}

/**
 * One entry per exporter generation whose signature a loader must handle.
 * External-data names are spread over the variants so each naming convention is exercised once.
 */
export const TINY_VARIANTS: readonly TinyVariant[] = [
  {
    name: 'diffusers-0.7',
    description: 'diffusers convert script ≤ v0.7: int32 input_ids, int64 timestep [batch]',
    options: { layout: 'diffusers', inputIdsType: 'int32', timestep: { type: 'int64', rank: 1, dim: 'batch' }, externalData: null },
  },
  {
    name: 'diffusers-0.8',
    description: 'diffusers convert script ≥ v0.8: int32 input_ids, float32 timestep [batch], UNet weights in weights.pb',
    options: {
      layout: 'diffusers',
      inputIdsType: 'int32',
      timestep: { type: 'float32', rank: 1, dim: 'batch' },
      externalData: 'weights.pb',
    },
  },
  {
    name: 'optimum-1.22',
    description: 'optimum v1.6–v1.22: int32 input_ids, int64 timestep [steps], config.json per part',
    options: { layout: 'optimum', inputIdsType: 'int32', timestep: { type: 'int64', rank: 1, dim: 'steps' }, externalData: null },
  },
  {
    name: 'optimum-1.24',
    description: 'optimum ≥ v1.24 / optimum-onnx: int64 input_ids, float32 rank-0 timestep, UNet weights in model.onnx_data',
    options: {
      layout: 'optimum',
      inputIdsType: 'int64',
      timestep: { type: 'float32', rank: 0 },
      externalData: 'model.onnx_data',
    },
  },
  {
    name: 'fp16',
    description: 'optimum ≥ v1.24 --dtype fp16: int64 input_ids, float16 everything incl. rank-0 timestep, model.onnx_data',
    options: {
      layout: 'optimum',
      dtype: 'float16',
      inputIdsType: 'int64',
      timestep: { type: 'float16', rank: 0 },
      externalData: 'model.onnx_data',
    },
  },
  {
    name: 'ort-fp16',
    description:
      'diffusers --fp16 export / onnxruntime optimize_pipeline fp16: int32 input_ids, float16 I/O, float16 timestep [batch], model.onnx.data',
    options: {
      layout: 'diffusers',
      dtype: 'float16',
      inputIdsType: 'int32',
      timestep: { type: 'float16', rank: 1, dim: 'batch' },
      externalData: 'model.onnx.data',
    },
  },
];

export const SD1_SCHEDULER_CONFIG: Readonly<Record<string, unknown>> = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.8.0',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'] as const;
const OPTIONAL_TOKENIZER_FILES = ['tokenizer.json'] as const;
const EXTERNAL_DATA_NAMES: readonly TinyExternalData[] = ['weights.pb', 'model.onnx_data', 'model.onnx.data'];
/** Low, like optimum's size_threshold=100, so even the tiny UNet really has tensors in the side file. */
const EXTERNAL_THRESHOLD_BYTES = 128;

/** The folder holding package.json, found by walking up from this module. */
export function findRepoRoot(start: string = path.dirname(fileURLToPath(import.meta.url))): string {
  let dir = path.resolve(start);
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${start}`);
    dir = parent;
  }
}

/** The real SD 1.x CLIP tokenizer, committed under test/fixtures (the repository is self-contained). */
export function defaultTokenizerDir(): string {
  return path.resolve(findRepoRoot(), 'server', 'sd', 'clip-tokenizer');
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
  return v;
}

export function resolveTinyModelOptions(opts: TinyModelOptions = {}): ResolvedTinyModelOptions {
  const dtype = opts.dtype ?? 'float32';
  if (dtype !== 'float32' && dtype !== 'float16') throw new RangeError(`dtype must be float32 or float16, got ${String(dtype)}`);
  const layout = opts.layout ?? 'diffusers';
  if (layout !== 'diffusers' && layout !== 'optimum') throw new RangeError(`layout must be diffusers or optimum, got ${String(layout)}`);
  const inputIdsType = opts.inputIdsType ?? 'int32';
  if (inputIdsType !== 'int32' && inputIdsType !== 'int64') throw new RangeError(`inputIdsType must be int32 or int64`);
  const vaeFactor = opts.vaeFactor ?? 8;
  if (vaeFactor !== 2 && vaeFactor !== 4 && vaeFactor !== 8) throw new RangeError(`vaeFactor must be 2, 4 or 8, got ${vaeFactor}`);
  const ts = opts.timestep ?? { type: dtype === 'float16' ? 'float16' : 'float32', rank: 1 };
  if (!['float32', 'float16', 'int64'].includes(ts.type)) throw new RangeError(`timestep.type invalid: ${String(ts.type)}`);
  if (ts.rank !== 0 && ts.rank !== 1) throw new RangeError(`timestep.rank must be 0 or 1`);
  const externalData = opts.externalData ?? null;
  if (externalData !== null && !EXTERNAL_DATA_NAMES.includes(externalData)) {
    throw new RangeError(`externalData must be one of ${EXTERNAL_DATA_NAMES.join(', ')} or null`);
  }
  const unetWidth = positiveInt('unetWidth', opts.unetWidth ?? 16);
  const unetDepth = opts.unetDepth ?? (unetWidth > 16 ? 2 : 0);
  if (!Number.isInteger(unetDepth) || unetDepth < 0) throw new RangeError(`unetDepth must be a non-negative integer`);
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer`);
  const scalingFactor = opts.scalingFactor ?? 0.18215;
  if (!Number.isFinite(scalingFactor) || scalingFactor <= 0) throw new RangeError(`scalingFactor must be > 0`);
  return {
    tokenizerDir: opts.tokenizerDir ?? defaultTokenizerDir(),
    seed,
    hidden: positiveInt('hidden', opts.hidden ?? 32),
    latentChannels: positiveInt('latentChannels', opts.latentChannels ?? 4),
    vaeFactor,
    dtype,
    inputIdsType,
    timestep: { type: ts.type, rank: ts.rank, dim: ts.dim ?? (layout === 'optimum' ? 'steps' : 'batch') },
    externalData,
    layout,
    unetWidth,
    unetDepth,
    scalingFactor,
    schedulerConfig: { ...SD1_SCHEDULER_CONFIG, ...(opts.schedulerConfig ?? {}) },
  };
}

// --- deterministic weights -----------------------------------------------------

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** mulberry32: tiny, fast and identical on every platform, unlike Math.random. Uniform in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Each tensor gets its own stream keyed by (seed, name), so adding a tensor to
 * one graph does not reshuffle the weights of every other tensor.
 */
function seededUniform(seed: number, key: string, n: number, scale: number): Float32Array {
  const rand = mulberry32((fnv1a(key) ^ Math.imul(seed | 0, 0x9e3779b1) ^ Math.floor(seed / 4294967296)) >>> 0);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

class Weights {
  constructor(
    private readonly g: GraphBuilder,
    private readonly seed: number,
    private readonly part: string,
  ) {}

  /** Uniform with variance gain/fanIn, i.e. roughly unit-variance activations after a linear layer. */
  add(name: string, dims: readonly number[], fanIn: number, gain = 1): string {
    const n = dims.reduce((a, b) => a * b, 1);
    const scale = Math.sqrt((3 * gain) / fanIn);
    return this.g.addFloatInitializer(name, seededUniform(this.seed, `${this.part}/${name}`, n, scale), dims);
  }
}

function floatType(dtype: TinyDtype): DataTypeCode {
  return dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
}

/** Graph-side float32 view of a float input (a Cast for fp16 graphs). */
function toF32(g: GraphBuilder, name: string, dtype: TinyDtype): string {
  return dtype === 'float16' ? g.op('Cast', [name], { to: attr.int(DataType.FLOAT) }) : name;
}

/** Produces the declared output from a float32 value, casting back for fp16 graphs. */
function emitOutput(g: GraphBuilder, value: string, outName: string, dtype: TinyDtype, shape: readonly Dim[]): void {
  if (dtype === 'float16') g.op('Cast', [value], { to: attr.int(DataType.FLOAT16) }, outName);
  else g.op('Identity', [value], {}, outName);
  g.addOutput(outName, floatType(dtype), shape);
}

interface DimNames {
  batch: string;
  sequence: string;
  height: string;
  width: string;
}

function dimNames(layout: TinyLayout): DimNames {
  return layout === 'optimum'
    ? { batch: 'batch_size', sequence: 'sequence_length', height: 'height', width: 'width' }
    : { batch: 'batch', sequence: 'sequence', height: 'height', width: 'width' };
}

// --- graphs ------------------------------------------------------------------

export function buildTextEncoder(o: ResolvedTinyModelOptions): GraphBuilder {
  const d = dimNames(o.layout);
  const H = o.hidden;
  const g = new GraphBuilder({ graphName: 'tiny_text_encoder', docString: 'FuseGraph tiny CLIP-shaped text encoder' });
  const w = new Weights(g, o.seed, 'text_encoder');

  const ids = g.addInput('input_ids', o.inputIdsType === 'int64' ? DataType.INT64 : DataType.INT32, [d.batch, d.sequence]);
  const ids64 = o.inputIdsType === 'int64' ? ids : g.op('Cast', [ids], { to: attr.int(DataType.INT64) });
  // Mod with fmod=0 follows the divisor's sign, so even negative ids land inside the table.
  const idx = g.op('Mod', [ids64, g.constInt64(TOKEN_TABLE_SIZE)], { fmod: attr.int(0) });
  const tok = g.op('Gather', [w.add('token_embedding', [TOKEN_TABLE_SIZE, H], 3), idx], { axis: attr.int(0) });
  const pos = g.op('Add', [tok, w.add('position_embedding', [SEQUENCE_LENGTH, H], 1.5)]);
  const x = g.op('Tanh', [pos]);
  // A sequence-mean term stands in for attention: every position then depends on every token.
  const mix = g.op('ReduceMean', [x], { axes: attr.ints([1]), keepdims: attr.int(1) });
  const a = g.op('MatMul', [x, w.add('proj_w', [H, H], H, 2)]);
  const b = g.op('MatMul', [mix, w.add('mix_w', [H, H], H, 2)]);
  const sum = g.op('Add', [g.op('Add', [a, b]), w.add('proj_b', [H], 3, 0.1)]);
  const hidden = g.op('Tanh', [sum]);
  const pooled = g.op('ReduceMean', [hidden], { axes: attr.ints([1]), keepdims: attr.int(0) });

  emitOutput(g, hidden, 'last_hidden_state', o.dtype, [d.batch, d.sequence, H]);
  emitOutput(g, pooled, 'pooler_output', o.dtype, [d.batch, H]);
  return g;
}

function conv3x3(g: GraphBuilder, x: string, weight: string, bias?: string): string {
  return g.op('Conv', bias ? [x, weight, bias] : [x, weight], {
    kernel_shape: attr.ints([3, 3]),
    pads: attr.ints([1, 1, 1, 1]),
    strides: attr.ints([1, 1]),
  });
}

export function buildUnet(o: ResolvedTinyModelOptions): GraphBuilder {
  const d = dimNames(o.layout);
  const C = o.latentChannels;
  const F = o.unetWidth;
  const H = o.hidden;
  const half = Math.max(1, Math.ceil(F / 2));
  const g = new GraphBuilder({ graphName: 'tiny_unet', docString: 'FuseGraph tiny UNet-shaped denoiser' });
  const w = new Weights(g, o.seed, 'unet');

  const sampleShape: Dim[] = [d.batch, C, d.height, d.width];
  const sample = g.addInput('sample', floatType(o.dtype), sampleShape);
  const tsType = o.timestep.type === 'int64' ? DataType.INT64 : o.timestep.type === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
  const timestep = g.addInput('timestep', tsType, o.timestep.rank === 0 ? [] : [o.timestep.dim]);
  const ehs = g.addInput('encoder_hidden_states', floatType(o.dtype), [d.batch, d.sequence, H]);

  const x = toF32(g, sample, o.dtype);
  const h0 = conv3x3(g, x, w.add('conv_in_w', [F, C, 3, 3], C * 9, 2), w.add('conv_in_b', [F], 3, 0.05));

  // Pooled text conditioning modulates the features (FiLM); it is added before a Tanh
  // so cond − uncond is scaled differently at every pixel.
  const ctxMean = g.op('ReduceMean', [toF32(g, ehs, o.dtype)], { axes: attr.ints([1]), keepdims: attr.int(0) });
  const film4 = g.constInt64([-1, F, 1, 1]);
  const scale = g.op('Reshape', [g.op('MatMul', [ctxMean, w.add('ctx_scale_w', [H, F], H, 1)]), film4]);
  const shift = g.op('Reshape', [g.op('MatMul', [ctxMean, w.add('ctx_shift_w', [H, F], H, 1)]), film4]);

  // Reshape to [-1, 1] first so a rank-0 or [1] timestep broadcasts over the batch and a [batch] one lines up.
  const tCol = g.op('Reshape', [g.op('Cast', [timestep], { to: attr.int(DataType.FLOAT) }), g.constInt64([-1, 1])]);
  const freqs = Array.from({ length: half }, (_, i) => Math.exp((-Math.log(10000) * i) / half));
  const args = g.op('Mul', [tCol, g.constFloat(freqs, [1, half])]);
  const sincos = g.op('Concat', [g.op('Sin', [args]), g.op('Cos', [args])], { axis: attr.int(1) });
  const temb = g.op('Reshape', [g.op('MatMul', [sincos, w.add('time_w', [2 * half, F], 2 * half, 1)]), film4]);

  const modulated = g.op('Mul', [h0, g.op('Add', [scale, g.constFloat(1)])]);
  let h = g.op('Tanh', [g.op('Add', [g.op('Add', [modulated, temb]), shift])]);

  for (let i = 0; i < o.unetDepth; i++) {
    const r = g.op('Tanh', [conv3x3(g, h, w.add(`block${i}_w`, [F, F, 3, 3], F * 9, 1), w.add(`block${i}_b`, [F], 3, 0.05))]);
    h = g.op('Add', [h, r]);
  }

  // Residual blocks grow |h|; shrinking the last conv keeps out_sample at roughly unit scale, like an ε prediction.
  const outGain = 2 / (1 + o.unetDepth);
  const out = conv3x3(g, h, w.add('conv_out_w', [C, F, 3, 3], F * 9, outGain), w.add('conv_out_b', [C], 3, 0.01));
  emitOutput(g, out, 'out_sample', o.dtype, sampleShape);
  return g;
}

export function buildVaeDecoder(o: ResolvedTinyModelOptions): GraphBuilder {
  const d = dimNames(o.layout);
  const C = o.latentChannels;
  const f = o.vaeFactor;
  const g = new GraphBuilder({ graphName: 'tiny_vae_decoder', docString: 'FuseGraph tiny VAE-decoder-shaped upsampler' });
  const w = new Weights(g, o.seed, 'vae_decoder');

  const latent = g.addInput('latent_sample', floatType(o.dtype), [d.batch, C, d.height, d.width]);
  // A 1×1 conv to 3·f² channels followed by DepthToSpace is a stride-f transposed conv: every output
  // pixel inside an f×f block gets its own weights (no flat blocks), and it costs far less than Resize.
  // Gain < 1 because the pipeline feeds latents / scaling_factor (|x| up to ~5); keeps Tanh out of saturation.
  const k = 3 * f * f;
  const proj = g.op('Conv', [toF32(g, latent, o.dtype), w.add('conv_w', [k, C, 1, 1], C, 0.15), w.add('conv_b', [k], 3, 0.02)], {
    kernel_shape: attr.ints([1, 1]),
  });
  const up = g.op('DepthToSpace', [g.op('Tanh', [proj])], { blocksize: attr.int(f), mode: attr.string('CRD') });
  emitOutput(g, up, 'sample', o.dtype, [d.batch, 3, `${d.height}*${f}`, `${d.width}*${f}`]);
  return g;
}

// --- folder ------------------------------------------------------------------

function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function blockOutChannels(f: 2 | 4 | 8): number[] {
  return [128, 256, 512, 512].slice(0, Math.log2(f) + 1);
}

/** Recorded in model_index.json; "_"-prefixed keys are ignored by diffusers' loader. */
function tinyMarker(o: ResolvedTinyModelOptions): Record<string, unknown> {
  const { tokenizerDir: _tokenizerDir, schedulerConfig: _schedulerConfig, ...rest } = o;
  return rest;
}

function modelIndex(o: ResolvedTinyModelOptions): Record<string, unknown> {
  if (o.layout === 'optimum') {
    return {
      _class_name: 'StableDiffusionPipeline',
      _diffusers_version: '0.30.0',
      _fusegraph_tiny: tinyMarker(o),
      feature_extractor: [null, null],
      image_encoder: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', String(o.schedulerConfig['_class_name'] ?? 'PNDMScheduler')],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    };
  }
  return {
    _class_name: 'OnnxStableDiffusionPipeline',
    _diffusers_version: '0.8.0',
    _fusegraph_tiny: tinyMarker(o),
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', String(o.schedulerConfig['_class_name'] ?? 'PNDMScheduler')],
    text_encoder: ['diffusers', 'OnnxRuntimeModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'OnnxRuntimeModel'],
    vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
    vae_encoder: [null, null],
  };
}

function vaeDecoderConfig(o: ResolvedTinyModelOptions): Record<string, unknown> {
  return {
    _class_name: 'AutoencoderKL',
    block_out_channels: blockOutChannels(o.vaeFactor),
    in_channels: 3,
    out_channels: 3,
    latent_channels: o.latentChannels,
    sample_size: 64 * o.vaeFactor,
    scaling_factor: o.scalingFactor,
  };
}

function textEncoderConfig(o: ResolvedTinyModelOptions): Record<string, unknown> {
  return {
    architectures: ['CLIPTextModel'],
    model_type: 'clip_text_model',
    hidden_size: o.hidden,
    projection_dim: o.hidden,
    max_position_embeddings: SEQUENCE_LENGTH,
    vocab_size: 49408,
    bos_token_id: 49406,
    eos_token_id: 49407,
    pad_token_id: 1,
    torch_dtype: o.dtype,
  };
}

function unetConfig(o: ResolvedTinyModelOptions): Record<string, unknown> {
  return {
    _class_name: 'UNet2DConditionModel',
    in_channels: o.latentChannels,
    out_channels: o.latentChannels,
    sample_size: 64,
    cross_attention_dim: o.hidden,
    block_out_channels: [o.unetWidth],
  };
}

async function copyTokenizer(src: string, dst: string): Promise<void> {
  await mkdir(dst, { recursive: true });
  for (const f of TOKENIZER_FILES) {
    const from = path.join(src, f);
    if (!existsSync(from)) throw new Error(`tokenizer file missing: ${from}`);
    await copyFile(from, path.join(dst, f));
  }
  for (const f of OPTIONAL_TOKENIZER_FILES) {
    const from = path.join(src, f);
    if (existsSync(from)) await copyFile(from, path.join(dst, f));
  }
}

export async function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<void> {
  const o = resolveTinyModelOptions(opts);
  const root = path.resolve(dir);
  await mkdir(root, { recursive: true });

  await writeFile(path.join(root, 'model_index.json'), json(modelIndex(o)));
  await mkdir(path.join(root, 'scheduler'), { recursive: true });
  await writeFile(path.join(root, 'scheduler', 'scheduler_config.json'), json(o.schedulerConfig));
  if (o.tokenizerDir === 'byte-level') await writeByteLevelTokenizer(path.join(root, 'tokenizer'));
  else await copyTokenizer(o.tokenizerDir, path.join(root, 'tokenizer'));

  await buildTextEncoder(o).save(path.join(root, 'text_encoder', 'model.onnx'));

  // A side file left by an earlier write with other options would be misleading; drop it.
  const unetDir = path.join(root, 'unet');
  for (const name of EXTERNAL_DATA_NAMES) {
    if (name !== o.externalData) await rm(path.join(unetDir, name), { force: true });
  }
  await buildUnet(o).save(path.join(unetDir, 'model.onnx'), {
    externalData: o.externalData === null ? null : { location: o.externalData, threshold: EXTERNAL_THRESHOLD_BYTES },
  });

  await buildVaeDecoder(o).save(path.join(root, 'vae_decoder', 'model.onnx'));
  await writeFile(path.join(root, 'vae_decoder', 'config.json'), json(vaeDecoderConfig(o)));

  if (o.layout === 'optimum') {
    await writeFile(path.join(root, 'text_encoder', 'config.json'), json(textEncoderConfig(o)));
    await writeFile(path.join(root, 'unet', 'config.json'), json(unetConfig(o)));
  }
}
