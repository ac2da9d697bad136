/**
 * The Stable Diffusion text encoder as an ONNX graph, emitted straight from checkpoint weights: CLIP ViT-L/14 text
 * (SD-1, transformers naming) or OpenCLIP ViT-H text (SD-2, OpenCLIP naming with a fused in_proj).
 *
 * Graph I/O (float32 at the boundary whatever the precision):
 * - `input_ids` int32 [batch, sequence], sequence ≤ maxPositions (FuseGraph feeds one 77-token chunk at a time);
 * - with `extraEmbeddings` (the checkpoint builds): `extra_embeddings` float32 [extra, width], textual-inversion
 *   vectors (server/sd/embeddings.ts): an id −1−k stands for row k (extra may be 0, ids ≥ 0 are the vocabulary's);
 * - `last_hidden_state` float32 [batch, sequence, width]: what the UNet is conditioned on by default.
 *   CLIP (SD-1, FrozenCLIPEmbedder): the last layer's output → final_layer_norm.
 *   OpenCLIP (SD-2, FrozenOpenCLIPEmbedder layer="penultimate"): the output of the second-to-last layer → ln_final
 *   (LDM stops the resblock loop one layer early), so the last resblock is never run and is not in the graph.
 * - `hidden_states_penultimate` float32 [batch, sequence, width]: transformers' `hidden_states[-2]` (the output of
 *   the second-to-last layer) with the final layer norm applied, i.e. "CLIP skip 2" as ComfyUI applies it
 *   (`layer="hidden", layer_idx=-2, layer_norm_hidden_state=True`). For CLIP that is one layer before the default.
 *   For OpenCLIP it is the same tensor as `last_hidden_state`: SD-2's default already is the penultimate layer, and
 *   ComfyUI's clip skip 2 on SD-2 (layer_idx −2) gives exactly that default too — so both outputs agree there.
 *
 * Semantics as transformers' CLIPTextTransformer / OpenCLIP's TextTransformer: token embedding + position embedding
 * (position ids = arange(sequence)), pre-LN residual blocks, causal self-attention (the upper triangle masked with
 * the dtype's most negative value, built in the graph for whatever sequence length comes in), heads = arch.heads,
 * scale 1/sqrt(head_dim), MLP 4·width with quick_gelu (CLIP) or exact gelu
 * (OpenCLIP), LayerNorm eps 1e-5.
 */
import path from 'node:path';

import { DataType, attr, type GraphBuilder } from '../../onnx-writer/graph-builder.js';
import type { TextEncoderArchitecture } from '../architecture.js';
import { CheckpointError } from '../tensor-file.js';
import type { GraphPrecision, Weights } from '../weights.js';
import { GraphOps, createGraphBuilder, transpose2d } from './graph-ops.js';

const LAYER_NORM_EPS = 1e-5;

/** Names of one pre-LN residual block's tensors, whichever naming the encoder uses. */
interface BlockNames {
  ln1: string;
  ln2: string;
  /** CLIP: separate q/k/v projections; OpenCLIP: one fused [3W, W] in_proj. */
  qkv: { q: string; k: string; v: string } | { fused: string };
  out: string;
  fc1: string;
  fc2: string;
}

interface EncoderNames {
  tokenEmbedding: string;
  positionEmbedding: string;
  finalNorm: string;
  block(layer: number): BlockNames;
}

function encoderNames(kind: TextEncoderArchitecture['kind']): EncoderNames {
  if (kind === 'clip') {
    return {
      tokenEmbedding: 'text_model.embeddings.token_embedding.weight',
      positionEmbedding: 'text_model.embeddings.position_embedding.weight',
      finalNorm: 'text_model.final_layer_norm',
      block: (l) => {
        const p = `text_model.encoder.layers.${l}`;
        return {
          ln1: `${p}.layer_norm1`,
          ln2: `${p}.layer_norm2`,
          qkv: { q: `${p}.self_attn.q_proj`, k: `${p}.self_attn.k_proj`, v: `${p}.self_attn.v_proj` },
          out: `${p}.self_attn.out_proj`,
          fc1: `${p}.mlp.fc1`,
          fc2: `${p}.mlp.fc2`,
        };
      },
    };
  }
  return {
    tokenEmbedding: 'token_embedding.weight',
    positionEmbedding: 'positional_embedding',
    finalNorm: 'ln_final',
    block: (l) => {
      const p = `transformer.resblocks.${l}`;
      return {
        ln1: `${p}.ln_1`,
        ln2: `${p}.ln_2`,
        qkv: { fused: `${p}.attn.in_proj` },
        out: `${p}.attn.out_proj`,
        fc1: `${p}.mlp.c_fc`,
        fc2: `${p}.mlp.c_proj`,
      };
    },
  };
}

class TextEncoderEmitter {
  readonly g: GraphBuilder;
  constructor(
    readonly ops: GraphOps,
    readonly arch: TextEncoderArchitecture,
  ) {
    this.g = ops.g;
  }

  expectShape(name: string, shape: readonly number[]): void {
    const got = this.ops.weights.shape(name);
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new CheckpointError(`text encoder: ${name} is [${got.join(', ')}], expected [${shape.join(', ')}]`, name);
    }
  }

  layerNorm(x: string, prefix: string): Promise<string> {
    this.expectShape(`${prefix}.weight`, [this.arch.width]);
    return this.ops.layerNorm(x, prefix, LAYER_NORM_EPS);
  }

  linear(x: string, prefix: string, inF: number, outF: number): Promise<string> {
    this.expectShape(`${prefix}.weight`, [outF, inF]);
    return this.ops.linear(x, prefix);
  }

  /** q, k and v from OpenCLIP's fused in_proj_weight [3W, W] / in_proj_bias [3W], read once each. */
  async fusedProjections(x: string, prefix: string): Promise<[string, string, string]> {
    const W = this.arch.width;
    this.expectShape(`${prefix}_weight`, [3 * W, W]);
    this.expectShape(`${prefix}_bias`, [3 * W]);
    const weight = await this.ops.weights.float32(`${prefix}_weight`);
    const bias = await this.ops.weights.float32(`${prefix}_bias`);
    const out: string[] = [];
    for (const [i, part] of ['q', 'k', 'v'].entries()) {
      const wT = transpose2d(weight.subarray(i * W * W, (i + 1) * W * W), W, W);
      const w = await this.ops.w.constant(`${prefix}_weight.${part}`, wT, [W, W]);
      const b = await this.ops.w.constant(`${prefix}_bias.${part}`, bias.slice(i * W, (i + 1) * W), [W]);
      out.push(this.g.op('Add', [this.g.op('MatMul', [x, w]), b]));
    }
    return out as [string, string, string];
  }

  async attention(x: string, names: BlockNames, mask: string): Promise<string> {
    const W = this.arch.width;
    const [q, k, v] =
      'fused' in names.qkv
        ? await this.fusedProjections(x, names.qkv.fused)
        : [
            await this.linear(x, names.qkv.q, W, W),
            await this.linear(x, names.qkv.k, W, W),
            await this.linear(x, names.qkv.v, W, W),
          ];
    const ctx = this.ops.attention(q, k, v, this.arch.heads, { attentionBias: mask });
    return this.linear(ctx, names.out, W, W);
  }

  activation(h: string): string {
    return this.arch.activation === 'quick_gelu' ? this.ops.quickGelu(h) : this.ops.gelu(h);
  }

  async block(x: string, names: BlockNames, mask: string): Promise<string> {
    const W = this.arch.width;
    const g = this.g;
    const h = g.op('Add', [x, await this.attention(await this.layerNorm(x, names.ln1), names, mask)]);
    const hidden = this.ops.weights.shape(`${names.fc1}.weight`)[0] ?? 4 * W;
    const up = this.activation(await this.linear(await this.layerNorm(h, names.ln2), names.fc1, W, hidden));
    return g.op('Add', [h, await this.linear(up, names.fc2, hidden, W)]);
  }
}

/**
 * Writes `outDir/model.onnx` and `outDir/weights.pb` for the text encoder whose tensors `weights` holds under the
 * canonical names of `arch.kind` (see the module comment), one tensor at a time.
 */
export async function buildTextEncoderGraph(
  weights: Weights,
  arch: TextEncoderArchitecture,
  outDir: string,
  opts: { precision: GraphPrecision; extraEmbeddings?: boolean },
): Promise<void> {
  if (arch.width % arch.heads !== 0) throw new RangeError(`text encoder: width ${arch.width} is not a multiple of ${arch.heads} heads`);
  if (arch.layers < 1) throw new RangeError(`text encoder: ${arch.layers} layers`);
  const names = encoderNames(arch.kind);
  const g = createGraphBuilder(`text_encoder_${arch.kind}`);
  const ops = await GraphOps.create(g, weights, path.join(outDir, 'weights.pb'), opts.precision);
  try {
    const e = new TextEncoderEmitter(ops, arch);
    const W = arch.width;

    const ids = g.addInput('input_ids', DataType.INT32, ['batch', 'sequence']);
    e.expectShape(names.tokenEmbedding, [arch.vocabSize, W]);
    e.expectShape(names.positionEmbedding, [arch.maxPositions, W]);
    const table = await ops.w.param(names.tokenEmbedding);
    let tokens: string;
    if (opts.extraEmbeddings) {
      // Textual-inversion vectors: id -1-k is row k of extra_embeddings [E, width] (float32; E may be 0). Two Gathers
      // and a Where rather than a Concat onto the table, which would copy the whole table at every call; an id ≥ 0
      // gives exactly the plain Gather's row.
      const extra = g.addInput('extra_embeddings', DataType.FLOAT, ['extra', W]);
      const zero = g.addInt32Initializer(g.uniqueName('const_i32'), [0], []);
      const own = g.op('Gather', [table, g.op('Max', [ids, zero])], { axis: attr.int(0) });
      // Row 0 is zeros, so every id ≥ 0 gathers something valid even when extra is empty.
      const padded = g.op('Concat', [ops.constant(new Array<number>(W).fill(0), [1, W]), ops.fromFloat32(extra)], { axis: attr.int(0) });
      const picked = g.op('Gather', [padded, g.op('Max', [g.op('Neg', [ids]), zero])], { axis: attr.int(0) });
      const isExtra = g.op('Unsqueeze', [g.op('Less', [ids, zero]), g.constInt64([2])]);
      tokens = g.op('Where', [isExtra, picked, own]);
    } else {
      tokens = g.op('Gather', [table, ids], { axis: attr.int(0) });
    }
    // Position ids = arange(sequence): the first `sequence` rows of the table.
    const seq = g.op('Shape', [ids], { start: attr.int(1), end: attr.int(2) });
    const positions = g.op('Slice', [await ops.w.param(names.positionEmbedding), g.constInt64([0]), seq, g.constInt64([0])]);
    let x = g.op('Add', [tokens, positions]);

    // Causal mask [1, 1, sequence, sequence]: 0 on and below the diagonal, the dtype's most negative value above.
    const range = g.op('Range', [g.constInt64(0), g.op('Squeeze', [seq, g.constInt64([0])]), g.constInt64(1)]);
    const above = g.op('Greater', [g.op('Unsqueeze', [range, g.constInt64([0])]), g.op('Unsqueeze', [range, g.constInt64([1])])]);
    const negative = ops.fp16 ? -65504 : -3.4028234663852886e38;
    const mask = g.op('Unsqueeze', [g.op('Where', [above, ops.constant(negative), ops.constant(0)]), g.constInt64([0, 1])]);

    // SD-2 stops one layer early (FrozenOpenCLIPEmbedder layer="penultimate"): the last resblock is never run.
    const run = arch.kind === 'open-clip' ? arch.layers - 1 : arch.layers;
    let penultimate = x;
    for (let l = 0; l < run; l++) {
      if (l === arch.layers - 1) penultimate = x;
      x = await e.block(x, names.block(l), mask);
    }
    if (run < arch.layers) penultimate = x;

    const toOutput = (t: string, name: string): void => {
      g.op('Identity', [ops.toFloat32(t)], {}, name);
      g.addOutput(name, DataType.FLOAT, ['batch', 'sequence', W]);
    };
    const last = await e.layerNorm(x, names.finalNorm);
    toOutput(last, 'last_hidden_state');
    toOutput(penultimate === x ? last : await e.layerNorm(penultimate, names.finalNorm), 'hidden_states_penultimate');
  } finally {
    await ops.close();
  }
  await g.save(path.join(outDir, 'model.onnx'));
}
