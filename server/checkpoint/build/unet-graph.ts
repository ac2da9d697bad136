/**
 * The Stable Diffusion UNet (LDM's openaimodel.UNetModel as SD-1.x/2.x configure it) written as an ONNX graph
 * straight from checkpoint weights under their canonical LDM names (`input_blocks.1.1.proj_in.weight`, ...).
 *
 * I/O as diffusers' ONNX exports (what FuseGraph's loader feeds):
 *   sample                float32 [batch, inChannels, height, width]
 *   timestep              float32 [batch]
 *   encoder_hidden_states float32 [batch, sequence, contextDim]   (sequence: any multiple of 77 or none at all)
 *   out_sample            float32 [batch, outChannels, height, width]
 * height and width are free; they must be multiples of 2^(levels−1), as in LDM.
 *
 * Numerics follow LDM (ldm/modules/diffusionmodules/openaimodel.py, util.py, ldm/modules/attention.py): the
 * sinusoidal timestep embedding [cos, sin] is computed in the graph in float32, ResBlock GroupNorm eps 1e-5,
 * SpatialTransformer GroupNorm eps 1e-6, LayerNorm eps 1e-5, GEGLU with exact GELU, attention scale 1/√head_dim.
 * A 1×1-conv proj_in/proj_out (SD-1) is applied as a MatMul on the [B, HW, C] tokens, which is the same function as
 * the conv before the rearrange; SD-2's Linear projections take the same path.
 */

import path from 'node:path';

import { attr } from '../../onnx-writer/graph-builder.js';
import { DataType } from '../../onnx-writer/proto.js';
import type { UnetArchitecture } from '../architecture.js';
import { CheckpointError } from '../tensor-file.js';
import type { GraphPrecision, Weights } from '../weights.js';
import { GraphOps, createGraphBuilder, type OpChoices } from './graph-ops.js';

export interface BuildUnetOptions {
  readonly precision: GraphPrecision;
  /** Called after each weight tensor is read: `done` of `total` tensors. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Operator formulations (benchmarks); the defaults are the fastest measured on CPU. */
  readonly choices?: Partial<OpChoices>;
}

export const UNET_MODEL_FILE = 'model.onnx';
export const UNET_WEIGHTS_FILE = 'weights.pb';

const RESBLOCK_EPS = 1e-5;
const TRANSFORMER_NORM_EPS = 1e-6;
const LAYER_NORM_EPS = 1e-5;
const MAX_PERIOD = 10000;

/** Writes `outDir/model.onnx` and its external data `outDir/weights.pb`, streaming the weights one at a time. */
export async function buildUnetGraph(
  weights: Weights,
  arch: UnetArchitecture,
  outDir: string,
  opts: BuildUnetOptions,
): Promise<void> {
  checkArchitecture(arch);
  const counted = countingWeights(weights, opts.onProgress);
  const g = createGraphBuilder('unet');
  const ops = await GraphOps.create(g, counted.weights, path.join(outDir, UNET_WEIGHTS_FILE), opts.precision, opts.choices);
  try {
    await new UnetEmitter(ops, arch).emit();
  } finally {
    await ops.close();
  }
  counted.finish();
  await g.save(path.join(outDir, UNET_MODEL_FILE));
}

function checkArchitecture(arch: UnetArchitecture): void {
  const levels = arch.channelMult.length;
  if (levels === 0) throw new RangeError('UNet architecture has no levels');
  if (arch.attentionLevels.length !== levels) {
    throw new RangeError(`attentionLevels has ${arch.attentionLevels.length} entries for ${levels} levels`);
  }
  if ((arch.numHeads === null) === (arch.headChannels === null)) {
    throw new RangeError('exactly one of numHeads and headChannels must be set');
  }
}

/** A view of `weights` that reports progress per tensor read. */
function countingWeights(
  weights: Weights,
  onProgress: ((done: number, total: number) => void) | undefined,
): { weights: Weights; finish: () => void } {
  let total = 0;
  for (const _ of weights.names()) total++;
  let done = 0;
  const view: Weights = {
    has: (name) => weights.has(name),
    shape: (name) => weights.shape(name),
    names: () => weights.names(),
    float32: async (name) => {
      const data = await weights.float32(name);
      done = Math.min(done + 1, total);
      onProgress?.(done, total);
      return data;
    },
  };
  return { weights: view, finish: () => onProgress?.(total, total) };
}

class UnetEmitter {
  private readonly g;
  private context = '';
  /** SiLU(emb), shared by every ResBlock's emb_layers. */
  private embSilu = '';

  constructor(
    private readonly ops: GraphOps,
    private readonly arch: UnetArchitecture,
  ) {
    this.g = ops.g;
  }

  private require(name: string): void {
    if (!this.ops.weights.has(name)) throw new CheckpointError(`the UNet weights have no ${name}`, name);
  }

  async emit(): Promise<void> {
    const { g, ops, arch } = this;
    const sample = g.addInput('sample', DataType.FLOAT, ['batch', arch.inChannels, 'height', 'width']);
    const timestep = g.addInput('timestep', DataType.FLOAT, ['batch']);
    const ehs = g.addInput('encoder_hidden_states', DataType.FLOAT, ['batch', 'sequence', arch.contextDim]);
    this.context = ops.fromFloat32(ehs);

    const temb = ops.fromFloat32(this.timestepEmbedding(timestep));
    const emb = await ops.linear(ops.silu(await ops.linear(temb, 'time_embed.0')), 'time_embed.2');
    this.embSilu = ops.silu(emb);

    const levels = arch.channelMult.length;
    let h = await ops.conv(ops.fromFloat32(sample), 'input_blocks.0.0');
    const hs: string[] = [h];
    let index = 1;
    for (let level = 0; level < levels; level++) {
      for (let r = 0; r < arch.numResBlocks; r++) {
        const p = `input_blocks.${index}`;
        h = await this.resBlock(h, `${p}.0`);
        if (arch.attentionLevels[level]) h = await this.spatialTransformer(h, `${p}.1`);
        hs.push(h);
        index++;
      }
      if (level !== levels - 1) {
        h = await ops.conv(h, `input_blocks.${index}.0.op`, { stride: 2, pad: 1 });
        hs.push(h);
        index++;
      }
    }

    h = await this.resBlock(h, 'middle_block.0');
    h = await this.spatialTransformer(h, 'middle_block.1');
    h = await this.resBlock(h, 'middle_block.2');

    index = 0;
    for (let level = levels - 1; level >= 0; level--) {
      for (let r = 0; r <= arch.numResBlocks; r++) {
        const p = `output_blocks.${index}`;
        const skip = hs.pop();
        if (skip === undefined) throw new RangeError('UNet skip connections ran out');
        h = g.op('Concat', [h, skip], { axis: attr.int(1) });
        h = await this.resBlock(h, `${p}.0`);
        let sub = 1;
        if (arch.attentionLevels[level]) h = await this.spatialTransformer(h, `${p}.${sub++}`);
        if (level !== 0 && r === arch.numResBlocks) h = await this.upsample(h, `${p}.${sub}`);
        index++;
      }
    }

    h = await ops.groupNorm(h, 'out.0', { eps: RESBLOCK_EPS, silu: true });
    h = await ops.conv(h, 'out.2');
    g.op('Identity', [ops.toFloat32(h)], {}, 'out_sample');
    g.addOutput('out_sample', DataType.FLOAT, ['batch', arch.outChannels, 'height', 'width']);
  }

  /** util.timestep_embedding: [cos(t·f), sin(t·f)], f_i = exp(−ln(10000)·i/half), float32 [B, modelChannels]. */
  private timestepEmbedding(timestep: string): string {
    const { g } = this;
    const dim = this.arch.modelChannels;
    const half = Math.floor(dim / 2);
    // As torch computes it in float32: (−ln(max_period) · arange(half)) / half, then exp.
    const negLog = Math.fround(-Math.log(MAX_PERIOD));
    const freqs = Float32Array.from({ length: half }, (_, i) => Math.fround(Math.exp(Math.fround(Math.fround(negLog * i) / half))));
    const args = g.op('Mul', [g.op('Unsqueeze', [timestep, g.constInt64([1])]), g.addFloatInitializer(g.uniqueName('freqs'), freqs, [half])]);
    const parts = [g.op('Cos', [args]), g.op('Sin', [args])];
    if (dim % 2 === 1) {
      // Odd widths get a zero column, as LDM pads.
      const zeros = g.op('Mul', [g.op('Slice', [args, g.constInt64([0]), g.constInt64([1]), g.constInt64([1])]), g.constFloat(0)]);
      parts.push(zeros);
    }
    return g.op('Concat', parts, { axis: attr.int(-1) });
  }

  /** openaimodel.ResBlock (use_scale_shift_norm false, 1×1 conv skip when the channel count changes). */
  private async resBlock(x: string, prefix: string): Promise<string> {
    const { g, ops } = this;
    this.require(`${prefix}.in_layers.0.weight`);
    let h = await ops.groupNorm(x, `${prefix}.in_layers.0`, { eps: RESBLOCK_EPS, silu: true });
    h = await ops.conv(h, `${prefix}.in_layers.2`);
    const e = await ops.linear(this.embSilu, `${prefix}.emb_layers.1`);
    h = g.op('Add', [h, g.op('Unsqueeze', [e, g.constInt64([2, 3])])]);
    h = await ops.groupNorm(h, `${prefix}.out_layers.0`, { eps: RESBLOCK_EPS, silu: true });
    h = await ops.conv(h, `${prefix}.out_layers.3`);
    const skip = ops.weights.has(`${prefix}.skip_connection.weight`) ? await ops.conv(x, `${prefix}.skip_connection`) : x;
    return g.op('Add', [skip, h]);
  }

  /** attention.SpatialTransformer: GN → proj_in → BasicTransformerBlocks → proj_out → + x. */
  private async spatialTransformer(x: string, prefix: string): Promise<string> {
    const { g, ops, arch } = this;
    this.require(`${prefix}.norm.weight`);
    const channels = ops.weights.shape(`${prefix}.norm.weight`)[0]!;
    const heads = arch.numHeads ?? channels / arch.headChannels!;
    if (!Number.isInteger(heads) || heads < 1) {
      throw new CheckpointError(`${prefix}: ${channels} channels do not split into heads of ${arch.headChannels}`, prefix);
    }
    const h = await ops.groupNorm(x, `${prefix}.norm`, { eps: TRANSFORMER_NORM_EPS });
    // [B, C, H, W] → [B, HW, C]
    const tokensIn = g.op('Transpose', [g.op('Reshape', [h, g.constInt64([0, 0, -1])])], { perm: attr.ints([0, 2, 1]) });
    let t = await ops.linear(tokensIn, `${prefix}.proj_in`);
    for (let d = 0; d < arch.transformerDepth; d++) t = await this.transformerBlock(t, `${prefix}.transformer_blocks.${d}`, heads);
    t = await ops.linear(t, `${prefix}.proj_out`);
    const back = g.op('Reshape', [g.op('Transpose', [t], { perm: attr.ints([0, 2, 1]) }), g.op('Shape', [x])]);
    return g.op('Add', [back, x]);
  }

  /** attention.BasicTransformerBlock: self-attention, cross-attention to the context, GEGLU feed-forward. */
  private async transformerBlock(x: string, prefix: string, heads: number): Promise<string> {
    const { g, ops } = this;
    let n = await ops.layerNorm(x, `${prefix}.norm1`, LAYER_NORM_EPS);
    x = g.op('Add', [await this.crossAttention(n, n, `${prefix}.attn1`, heads), x]);
    n = await ops.layerNorm(x, `${prefix}.norm2`, LAYER_NORM_EPS);
    x = g.op('Add', [await this.crossAttention(n, this.context, `${prefix}.attn2`, heads), x]);
    n = await ops.layerNorm(x, `${prefix}.norm3`, LAYER_NORM_EPS);
    const ff = await ops.linear(await ops.geglu(n, `${prefix}.ff.net.0.proj`), `${prefix}.ff.net.2`);
    return g.op('Add', [ff, x]);
  }

  /** attention.CrossAttention: to_q(x), to_k/to_v(context) without bias, heads, to_out.0 with bias. */
  private async crossAttention(x: string, context: string, prefix: string, heads: number): Promise<string> {
    const { ops } = this;
    const q = await ops.linear(x, `${prefix}.to_q`);
    const k = await ops.linear(context, `${prefix}.to_k`);
    const v = await ops.linear(context, `${prefix}.to_v`);
    return ops.linear(ops.attention(q, k, v, heads), `${prefix}.to_out.0`);
  }

  /** openaimodel.Upsample: nearest 2× then conv 3×3. */
  private async upsample(x: string, prefix: string): Promise<string> {
    const { g, ops } = this;
    const up = g.op('Resize', [x, '', g.constFloat([1, 1, 2, 2])], {
      mode: attr.string('nearest'),
      coordinate_transformation_mode: attr.string('asymmetric'),
      nearest_mode: attr.string('floor'),
    });
    return ops.conv(up, `${prefix}.conv`);
  }
}

/**
 * Every tensor an LDM UNet of `arch` has, by canonical name, with its shape (the transformer's inner width equals
 * the channel count, as in SD). What buildUnetGraph reads; tests and benchmarks make random weights from it.
 */
export function unetParameterShapes(arch: UnetArchitecture): Map<string, number[]> {
  checkArchitecture(arch);
  const shapes = new Map<string, number[]>();
  const mc = arch.modelChannels;
  const ted = mc * 4;
  const linear = (p: string, out: number, inF: number, bias = true): void => {
    shapes.set(`${p}.weight`, [out, inF]);
    if (bias) shapes.set(`${p}.bias`, [out]);
  };
  const conv = (p: string, out: number, inC: number, k: number): void => {
    shapes.set(`${p}.weight`, [out, inC, k, k]);
    shapes.set(`${p}.bias`, [out]);
  };
  const norm = (p: string, c: number): void => {
    shapes.set(`${p}.weight`, [c]);
    shapes.set(`${p}.bias`, [c]);
  };
  const res = (p: string, inC: number, out: number): void => {
    norm(`${p}.in_layers.0`, inC);
    conv(`${p}.in_layers.2`, out, inC, 3);
    linear(`${p}.emb_layers.1`, out, ted);
    norm(`${p}.out_layers.0`, out);
    conv(`${p}.out_layers.3`, out, out, 3);
    if (inC !== out) conv(`${p}.skip_connection`, out, inC, 1);
  };
  const st = (p: string, c: number): void => {
    norm(`${p}.norm`, c);
    const proj = (q: string): void => (arch.linearProjection ? linear(q, c, c) : conv(q, c, c, 1));
    proj(`${p}.proj_in`);
    for (let d = 0; d < arch.transformerDepth; d++) {
      const b = `${p}.transformer_blocks.${d}`;
      for (const a of ['attn1', 'attn2']) {
        const ctx = a === 'attn1' ? c : arch.contextDim;
        linear(`${b}.${a}.to_q`, c, c, false);
        linear(`${b}.${a}.to_k`, c, ctx, false);
        linear(`${b}.${a}.to_v`, c, ctx, false);
        linear(`${b}.${a}.to_out.0`, c, c);
      }
      linear(`${b}.ff.net.0.proj`, 8 * c, c);
      linear(`${b}.ff.net.2`, c, 4 * c);
      for (const n of ['norm1', 'norm2', 'norm3']) norm(`${b}.${n}`, c);
    }
    proj(`${p}.proj_out`);
  };
  linear('time_embed.0', ted, mc);
  linear('time_embed.2', ted, ted);
  conv('input_blocks.0.0', mc, arch.inChannels, 3);
  const levels = arch.channelMult.length;
  const chans = [mc];
  let ch = mc;
  let index = 1;
  for (let level = 0; level < levels; level++) {
    const out = arch.channelMult[level]! * mc;
    for (let r = 0; r < arch.numResBlocks; r++) {
      res(`input_blocks.${index}.0`, ch, out);
      ch = out;
      if (arch.attentionLevels[level]) st(`input_blocks.${index}.1`, ch);
      chans.push(ch);
      index++;
    }
    if (level !== levels - 1) {
      conv(`input_blocks.${index}.0.op`, ch, ch, 3);
      chans.push(ch);
      index++;
    }
  }
  res('middle_block.0', ch, ch);
  st('middle_block.1', ch);
  res('middle_block.2', ch, ch);
  index = 0;
  for (let level = levels - 1; level >= 0; level--) {
    const out = arch.channelMult[level]! * mc;
    for (let r = 0; r <= arch.numResBlocks; r++) {
      res(`output_blocks.${index}.0`, ch + chans.pop()!, out);
      ch = out;
      let sub = 1;
      if (arch.attentionLevels[level]) st(`output_blocks.${index}.${sub++}`, ch);
      if (level !== 0 && r === arch.numResBlocks) conv(`output_blocks.${index}.${sub}.conv`, ch, ch, 3);
      index++;
    }
  }
  norm('out.0', ch);
  conv('out.2', arch.outChannels, ch, 3);
  return shapes;
}
