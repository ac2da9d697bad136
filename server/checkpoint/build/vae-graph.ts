/**
 * Stable Diffusion's VAE (LDM AutoencoderKL) as ONNX graphs, emitted straight from checkpoint weights under the
 * canonical names without `first_stage_model.` (`post_quant_conv.*`, `decoder.*`, `encoder.*`, `quant_conv.*`).
 *
 * Decoder: `latent_sample` float32 [batch, zChannels, height, width] (already divided by the scaling factor) →
 * `sample` float32 [batch, outChannels, height·2^(levels−1), width·2^(levels−1)] = decoder(post_quant_conv(z)),
 * not clamped. Encoder: `sample` float32 [batch, 3, H, W] (H and W multiples of 2^(levels−1)) → `latent_sample` =
 * the posterior's mean, the first zChannels of quant_conv(encoder(x)), not scaled.
 *
 * LDM's layout (ldm/modules/diffusionmodules/model.py): GroupNorm(32, eps 1e-6) + swish, ResnetBlocks with a 1×1
 * `nin_shortcut` where the channel count changes, single-head attention over H·W with scale 1/sqrt(C) whose q/k/v/
 * proj_out are stored as 1×1 convs; the decoder runs its levels reversed (up[levels−1] first), num_res_blocks+1
 * blocks each, then a nearest 2× upsample + 3×3 conv except at level 0; the encoder runs levels in order,
 * num_res_blocks blocks each, then pad (0,1,0,1) + 3×3 stride-2 conv except at the last level. SD's VAE has
 * attention only in the middle (attn_resolutions []); per-level `attn.J` blocks are emitted when a file has them.
 */
import path from 'node:path';

import { DataType, attr } from '../../onnx-writer/graph-builder.js';
import type { VaeArchitecture } from '../architecture.js';
import { CheckpointError } from '../tensor-file.js';
import type { GraphPrecision, Weights } from '../weights.js';
import { GraphOps, createGraphBuilder } from './graph-ops.js';

const NORM_EPS = 1e-6;

function expectWeight(ops: GraphOps, name: string, shape: readonly number[]): void {
  if (!ops.weights.has(name)) throw new CheckpointError(`VAE: the checkpoint has no tensor ${name}`, name);
  const got = ops.weights.shape(name);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new CheckpointError(`VAE: ${name} is [${got.join(', ')}], expected [${shape.join(', ')}]`, name);
  }
}

/** Conv with the expected weight shape checked first, so a wrong architecture fails with a message at build time. */
function conv(ops: GraphOps, x: string, prefix: string, inC: number, outC: number, kernel: number, stride = 1, pad?: number): Promise<string> {
  expectWeight(ops, `${prefix}.weight`, [outC, inC, kernel, kernel]);
  return ops.conv(x, prefix, pad === undefined ? { stride } : { stride, pad });
}

function groupNorm(ops: GraphOps, x: string, prefix: string, channels: number, silu: boolean): Promise<string> {
  expectWeight(ops, `${prefix}.weight`, [channels]);
  return ops.groupNorm(x, prefix, { eps: NORM_EPS, silu });
}

/** LDM ResnetBlock without a time embedding (temb_channels 0): x + conv2(swish(norm2(conv1(swish(norm1(x)))))). */
async function resnetBlock(ops: GraphOps, x: string, prefix: string, inC: number, outC: number): Promise<string> {
  let h = await groupNorm(ops, x, `${prefix}.norm1`, inC, true);
  h = await conv(ops, h, `${prefix}.conv1`, inC, outC, 3);
  h = await groupNorm(ops, h, `${prefix}.norm2`, outC, true);
  h = await conv(ops, h, `${prefix}.conv2`, outC, outC, 3);
  const skip = inC === outC ? x : await conv(ops, x, `${prefix}.nin_shortcut`, inC, outC, 1);
  return ops.g.op('Add', [skip, h]);
}

/** LDM AttnBlock: single-head self-attention over the H·W positions, scale 1/sqrt(C), 1×1-conv projections. */
async function attnBlock(ops: GraphOps, x: string, prefix: string, channels: number): Promise<string> {
  const g = ops.g;
  const h = await groupNorm(ops, x, `${prefix}.norm`, channels, false);
  // [B, C, H, W] → [B, H·W, C]: the 1×1 convs become Linears on the last axis.
  const tokens = g.op('Transpose', [g.op('Reshape', [h, g.constInt64([0, channels, -1])])], { perm: attr.ints([0, 2, 1]) });
  for (const p of ['q', 'k', 'v', 'proj_out']) expectWeight(ops, `${prefix}.${p}.weight`, [channels, channels, 1, 1]);
  const q = await ops.linear(tokens, `${prefix}.q`);
  const k = await ops.linear(tokens, `${prefix}.k`);
  const v = await ops.linear(tokens, `${prefix}.v`);
  const out = await ops.linear(ops.attention(q, k, v, 1), `${prefix}.proj_out`);
  const back = g.op('Reshape', [g.op('Transpose', [out], { perm: attr.ints([0, 2, 1]) }), g.op('Shape', [x])]);
  return g.op('Add', [x, back]);
}

/** Per-level attention blocks, present only when the file has them (SD's VAE has none). */
function hasLevelAttn(ops: GraphOps, prefix: string, block: number): boolean {
  return ops.weights.has(`${prefix}.attn.${block}.q.weight`);
}

async function midBlock(ops: GraphOps, x: string, prefix: string, channels: number): Promise<string> {
  let h = await resnetBlock(ops, x, `${prefix}.block_1`, channels, channels);
  h = await attnBlock(ops, h, `${prefix}.attn_1`, channels);
  return resnetBlock(ops, h, `${prefix}.block_2`, channels, channels);
}

function checkArch(arch: VaeArchitecture): void {
  if (arch.chMult.length < 1) throw new RangeError('VAE: chMult is empty');
  for (const m of arch.chMult) {
    if ((arch.ch * m) % 32 !== 0) throw new RangeError(`VAE: ${arch.ch * m} channels do not split into 32 groups`);
  }
}

/** Writes `outDir/model.onnx` + `outDir/weights.pb`: latent_sample → sample (see the module comment). */
export async function buildVaeDecoderGraph(
  weights: Weights,
  arch: VaeArchitecture,
  outDir: string,
  opts: { precision: GraphPrecision },
): Promise<void> {
  checkArch(arch);
  const g = createGraphBuilder('vae_decoder');
  const ops = await GraphOps.create(g, weights, path.join(outDir, 'weights.pb'), opts.precision);
  try {
    const { ch, chMult, numResBlocks, zChannels } = arch;
    const levels = chMult.length;
    const input = g.addInput('latent_sample', DataType.FLOAT, ['batch', zChannels, 'height', 'width']);
    let h = ops.fromFloat32(input);
    h = await conv(ops, h, 'post_quant_conv', zChannels, zChannels, 1);
    let c = ch * chMult[levels - 1]!;
    h = await conv(ops, h, 'decoder.conv_in', zChannels, c, 3);
    h = await midBlock(ops, h, 'decoder.mid', c);
    const scales = g.constFloat([1, 1, 2, 2]);
    for (let level = levels - 1; level >= 0; level--) {
      const out = ch * chMult[level]!;
      for (let j = 0; j <= numResBlocks; j++) {
        h = await resnetBlock(ops, h, `decoder.up.${level}.block.${j}`, c, out);
        c = out;
        if (hasLevelAttn(ops, `decoder.up.${level}`, j)) h = await attnBlock(ops, h, `decoder.up.${level}.attn.${j}`, c);
      }
      if (level !== 0) {
        // torch.nn.functional.interpolate(scale_factor=2, mode="nearest"): output pixel i reads input floor(i/2).
        h = g.op('Resize', [h, '', scales], {
          mode: attr.string('nearest'),
          coordinate_transformation_mode: attr.string('asymmetric'),
          nearest_mode: attr.string('floor'),
        });
        h = await conv(ops, h, `decoder.up.${level}.upsample.conv`, c, c, 3);
      }
    }
    h = await groupNorm(ops, h, 'decoder.norm_out', c, true);
    h = await conv(ops, h, 'decoder.conv_out', c, arch.outChannels, 3);
    g.op('Identity', [ops.toFloat32(h)], {}, 'sample');
    g.addOutput('sample', DataType.FLOAT, ['batch', arch.outChannels, 'image_height', 'image_width']);
  } finally {
    await ops.close();
  }
  await g.save(path.join(outDir, 'model.onnx'));
}

/** Writes `outDir/model.onnx` + `outDir/weights.pb`: sample → latent_sample, the posterior mean (module comment). */
export async function buildVaeEncoderGraph(
  weights: Weights,
  arch: VaeArchitecture,
  outDir: string,
  opts: { precision: GraphPrecision },
): Promise<void> {
  checkArch(arch);
  const g = createGraphBuilder('vae_encoder');
  const ops = await GraphOps.create(g, weights, path.join(outDir, 'weights.pb'), opts.precision);
  try {
    const { ch, chMult, numResBlocks, zChannels } = arch;
    const levels = chMult.length;
    const imageChannels = arch.outChannels;
    const input = g.addInput('sample', DataType.FLOAT, ['batch', imageChannels, 'image_height', 'image_width']);
    let h = await conv(ops, ops.fromFloat32(input), 'encoder.conv_in', imageChannels, ch, 3);
    let c = ch;
    // LDM's Downsample(with_conv): pad right and bottom by one, then a 3×3 stride-2 conv without padding.
    const downPads = g.constInt64([0, 0, 0, 0, 0, 0, 1, 1]);
    for (let level = 0; level < levels; level++) {
      const out = ch * chMult[level]!;
      for (let j = 0; j < numResBlocks; j++) {
        h = await resnetBlock(ops, h, `encoder.down.${level}.block.${j}`, c, out);
        c = out;
        if (hasLevelAttn(ops, `encoder.down.${level}`, j)) h = await attnBlock(ops, h, `encoder.down.${level}.attn.${j}`, c);
      }
      if (level !== levels - 1) {
        h = g.op('Pad', [h, downPads], { mode: attr.string('constant') });
        h = await conv(ops, h, `encoder.down.${level}.downsample.conv`, c, c, 3, 2, 0);
      }
    }
    h = await midBlock(ops, h, 'encoder.mid', c);
    h = await groupNorm(ops, h, 'encoder.norm_out', c, true);
    h = await conv(ops, h, 'encoder.conv_out', c, 2 * zChannels, 3);
    // The mean is quant_conv's first zChannels outputs: only those rows of its 1×1 weight are emitted.
    expectWeight(ops, 'quant_conv.weight', [2 * zChannels, 2 * zChannels, 1, 1]);
    const weight = await ops.w.param('quant_conv.weight', (d) => ({
      data: d.slice(0, zChannels * 2 * zChannels),
      dims: [zChannels, 2 * zChannels, 1, 1],
    }));
    const inputs = [h, weight];
    if (weights.has('quant_conv.bias')) {
      inputs.push(await ops.w.param('quant_conv.bias', (d) => ({ data: d.slice(0, zChannels), dims: [zChannels] })));
    }
    h = g.op('Conv', inputs, { kernel_shape: attr.ints([1, 1]) });
    g.op('Identity', [ops.toFloat32(h)], {}, 'latent_sample');
    g.addOutput('latent_sample', DataType.FLOAT, ['batch', zChannels, 'height', 'width']);
  } finally {
    await ops.close();
  }
  await g.save(path.join(outDir, 'model.onnx'));
}
