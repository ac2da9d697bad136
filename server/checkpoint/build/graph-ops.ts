/**
 * Emit helpers shared by the checkpoint graph builders (UNet, VAE, text encoder): the handful of layers Stable
 * Diffusion is made of, each written as ONNX nodes whose parameters stream from a checkpoint (Weights) into the
 * graph's side file one tensor at a time.
 *
 * Conventions:
 * - Every method takes and returns value names in the graph's *compute* precision (float32, or float16 when the
 *   graph is built with precision 'float16'). Use `fromFloat32` on float32 graph inputs and `toFloat32` before
 *   float32 graph outputs; both are no-ops in a float32 graph.
 * - `prefix` is the canonical module path of a layer in `Weights` (e.g. `input_blocks.1.0.in_layers.2`); the
 *   method reads `${prefix}.weight` and, when present, `${prefix}.bias`.
 * - Normalisation statistics are always computed in float32 (LDM's GroupNorm32 and torch autocast's LayerNorm do),
 *   with float32 scale/bias; in a float16 graph the value is cast up around the norm and back.
 * - Operator choices (GroupNormalization-21 vs InstanceNormalization, MultiHeadAttention vs MatMul/Softmax, ...)
 *   were measured on ONNX Runtime's CPU provider (tools/bench/unet-graph-ops.ts); DEFAULT_OP_CHOICES holds the
 *   fastest. All variants compute the same function, so they can be swapped per provider.
 *
 * Graphs use the default domain at opset 21 (GRAPH_OPSET) and com.microsoft opset 1: create the builder with
 * `createGraphBuilder`.
 */

import { DataType, GraphBuilder, WeightFileWriter, attr, type DataTypeCode } from '../../onnx-writer/graph-builder.js';
import { f32ToF16Bits } from '../../runtime/float16.js';
import { GraphWeights, type GraphPrecision, type Weights } from '../weights.js';

export const GRAPH_OPSET = 21;
/** ONNX IR version matching opset 21 (ONNX 1.16). */
export const GRAPH_IR_VERSION = 10;
export const MS_DOMAIN = 'com.microsoft';

/** A GraphBuilder at opset 21 with the com.microsoft contrib domain declared. */
export function createGraphBuilder(graphName: string): GraphBuilder {
  return new GraphBuilder({
    graphName,
    opset: GRAPH_OPSET,
    irVersion: GRAPH_IR_VERSION,
    producerName: 'fusegraph-checkpoint',
    extraOpsets: [{ domain: MS_DOMAIN, version: 1 }],
  });
}

/** Which ONNX formulation each layer is emitted with. All are numerically the same function. */
export interface OpChoices {
  /** GroupNormalization-21 (per-channel scale/bias) or Reshape→InstanceNormalization→Reshape→Mul→Add. */
  readonly groupNorm: 'group-normalization' | 'instance-normalization';
  /** com.microsoft.MultiHeadAttention with separate Q/K/V ([B,S,D] each), or Reshape/Transpose/MatMul/Softmax/MatMul. */
  readonly attention: 'multi-head-attention' | 'matmul-softmax';
  /** Exact (erf) GELU: opset-20 `Gelu`, com.microsoft `Gelu`, or the formula 0.5·x·(1+erf(x/√2)). */
  readonly gelu: 'onnx-gelu' | 'ms-gelu' | 'erf';
  /** SiLU: com.microsoft QuickGelu(alpha=1) (one pass) or Sigmoid→Mul. */
  readonly silu: 'quick-gelu' | 'sigmoid-mul';
  /** GEGLU projection: two MatMuls on the split weight, or one MatMul then Slice into halves. */
  readonly geglu: 'split-weights' | 'slice';
}

/**
 * Measured with tools/bench/unet-graph-ops.ts (ORT 1.30 CPU, 2 threads, model_channels 128 with SD's layout,
 * 32×32 latent, batch 2, 77 tokens; paired A/B runs, variant/default time): GroupNormalization-21 0.91–0.98× the
 * InstanceNormalization pattern; MatMul/Softmax attention 1.09–1.27× MultiHeadAttention; opset-20 Gelu 1.03–1.10×
 * com.microsoft Gelu; one MatMul + Slice for GEGLU 0.98–1.12× split weights. The erf formula and Sigmoid→Mul are
 * rewritten by ORT's own fusions into Gelu and QuickGelu (bit-identical outputs, timings within noise), so the
 * standard-op SiLU is kept for other providers.
 */
export const DEFAULT_OP_CHOICES: OpChoices = {
  groupNorm: 'group-normalization',
  attention: 'multi-head-attention',
  gelu: 'ms-gelu',
  silu: 'sigmoid-mul',
  geglu: 'split-weights',
};

export interface GroupNormOptions {
  /** Number of groups (SD: 32). */
  readonly groups?: number;
  /** ResBlocks 1e-5, SpatialTransformer and VAE 1e-6. */
  readonly eps: number;
  /** Rank of the input (4 for [B,C,H,W], 3 for [B,C,L]); default 4. */
  readonly rank?: number;
  /** Apply SiLU to the result (GN→SiLU is how ResBlocks and the UNet/VAE outputs use it). */
  readonly silu?: boolean;
}

export interface ConvOptions {
  readonly stride?: number;
  /** Symmetric padding on every spatial side; default (kernel−1)/2 ("same" for odd kernels). */
  readonly pad?: number;
}

export interface AttentionOptions {
  /**
   * An additive attention bias in compute precision, broadcastable to [B, heads, S, L] (e.g. a causal mask of
   * −inf/0 as [1, 1, S, S]). Both attention variants accept it.
   */
  readonly attentionBias?: string;
}

/**
 * The layer emitters over one GraphBuilder and one side file. Construct once per graph; call `close()` when done
 * (it closes the side file, not the builder).
 */
export class GraphOps {
  /** Parameters in the graph's precision (convs, linears). */
  readonly w: GraphWeights;
  /** Parameters kept in float32 whatever the precision (norm scales and biases). */
  readonly w32: GraphWeights;
  readonly choices: OpChoices;
  private readonly scalars = new Map<string, string>();

  constructor(
    readonly g: GraphBuilder,
    readonly weights: Weights,
    private readonly writer: WeightFileWriter,
    readonly precision: GraphPrecision,
    choices: Partial<OpChoices> = {},
  ) {
    this.w = new GraphWeights(g, weights, writer, precision);
    this.w32 = new GraphWeights(g, weights, writer, 'float32');
    this.choices = { ...DEFAULT_OP_CHOICES, ...choices };
  }

  /** Creates the side file `weightsPath` (e.g. `outDir/weights.pb`) and the emitters writing into it. */
  static async create(
    g: GraphBuilder,
    weights: Weights,
    weightsPath: string,
    precision: GraphPrecision,
    choices: Partial<OpChoices> = {},
  ): Promise<GraphOps> {
    return new GraphOps(g, weights, await WeightFileWriter.create(weightsPath), precision, choices);
  }

  async close(): Promise<void> {
    await this.writer.close();
  }

  get fp16(): boolean {
    return this.precision === 'float16';
  }

  /** ONNX element type of compute values. */
  get dataType(): DataTypeCode {
    return this.fp16 ? DataType.FLOAT16 : DataType.FLOAT;
  }

  /** A float32 value (graph input) in compute precision. */
  fromFloat32(x: string): string {
    return this.fp16 ? this.g.op('Cast', [x], { to: attr.int(DataType.FLOAT16) }) : x;
  }

  /** A compute-precision value as float32 (graph output). */
  toFloat32(x: string): string {
    return this.fp16 ? this.g.op('Cast', [x], { to: attr.int(DataType.FLOAT) }) : x;
  }

  /** A compute-precision constant (scalar when `dims` is omitted), deduplicated for scalars. */
  constant(values: number | readonly number[], dims?: readonly number[]): string {
    const data = typeof values === 'number' ? [values] : values;
    const shape = dims ?? (typeof values === 'number' ? [] : [data.length]);
    const key = typeof values === 'number' && dims === undefined ? String(values) : null;
    if (key !== null) {
      const hit = this.scalars.get(key);
      if (hit !== undefined) return hit;
    }
    const name = this.fp16
      ? this.g.addFloat16Initializer(this.g.uniqueName('const_h'), data.map(f32ToF16Bits), shape)
      : this.g.constFloat(data, shape);
    if (key !== null) this.scalars.set(key, name);
    return name;
  }

  /** Conv (any kernel size; 2-D unless the weight says otherwise) with bias when the checkpoint has one. */
  async conv(x: string, prefix: string, opts: ConvOptions = {}): Promise<string> {
    const shape = this.weights.shape(`${prefix}.weight`);
    const kernel = shape.slice(2);
    const stride = opts.stride ?? 1;
    const pads = kernel.map((k) => opts.pad ?? Math.floor((k - 1) / 2));
    const weight = await this.w.param(`${prefix}.weight`);
    const inputs = [x, weight];
    if (this.weights.has(`${prefix}.bias`)) inputs.push(await this.w.param(`${prefix}.bias`));
    return this.g.op('Conv', inputs, {
      kernel_shape: attr.ints(kernel),
      strides: attr.ints(kernel.map(() => stride)),
      pads: attr.ints([...pads, ...pads]),
    });
  }

  /** GroupNorm(groups, eps) over [B, C, ...] with the checkpoint's per-channel weight/bias, statistics in float32. */
  async groupNorm(x: string, prefix: string, opts: GroupNormOptions): Promise<string> {
    const groups = opts.groups ?? 32;
    const rank = opts.rank ?? 4;
    const channels = this.weights.shape(`${prefix}.weight`)[0]!;
    const x32 = this.toFloat32(x);
    let y: string;
    if (this.choices.groupNorm === 'group-normalization') {
      const scale = await this.w32.param(`${prefix}.weight`);
      const bias = await this.w32.param(`${prefix}.bias`);
      y = this.g.op('GroupNormalization', [x32, scale, bias], {
        epsilon: attr.float(opts.eps),
        num_groups: attr.int(groups),
        stash_type: attr.int(1),
      });
    } else {
      const bcast = [channels, ...Array.from({ length: rank - 2 }, () => 1)];
      const scale = await this.w32.param(`${prefix}.weight`, (data) => ({ data, dims: bcast }));
      const bias = await this.w32.param(`${prefix}.bias`, (data) => ({ data, dims: bcast }));
      const grouped = this.g.op('Reshape', [x32, this.g.constInt64([0, groups, -1])]);
      const ones = this.g.addFloatInitializer(this.g.uniqueName('gn_one'), new Float32Array(groups).fill(1), [groups]);
      const zeros = this.g.addFloatInitializer(this.g.uniqueName('gn_zero'), new Float32Array(groups), [groups]);
      const normed = this.g.op('InstanceNormalization', [grouped, ones, zeros], { epsilon: attr.float(opts.eps) });
      const back = this.g.op('Reshape', [normed, this.g.op('Shape', [x32])]);
      y = this.g.op('Add', [this.g.op('Mul', [back, scale]), bias]);
    }
    const out = this.fromFloat32(y);
    return opts.silu ? this.silu(out) : out;
  }

  /** LayerNorm over the last axis with the checkpoint's weight/bias, statistics in float32. */
  async layerNorm(x: string, prefix: string, eps = 1e-5): Promise<string> {
    const x32 = this.toFloat32(x);
    const scale = await this.w32.param(`${prefix}.weight`);
    const bias = await this.w32.param(`${prefix}.bias`);
    const y = this.g.op('LayerNormalization', [x32, scale, bias], { axis: attr.int(-1), epsilon: attr.float(eps) });
    return this.fromFloat32(y);
  }

  /**
   * torch Linear on the last axis: x[..., in] · Wᵀ + b. The weight may be [out, in] or a 1×1 conv's
   * [out, in, 1, 1] (the VAE's attention); it is transposed at build time. Bias when the checkpoint has one.
   */
  async linear(x: string, prefix: string): Promise<string> {
    const weight = await this.w.param(`${prefix}.weight`, transposeToInOut);
    const y = this.g.op('MatMul', [x, weight]);
    if (!this.weights.has(`${prefix}.bias`)) return y;
    return this.g.op('Add', [y, await this.w.param(`${prefix}.bias`)]);
  }

  /** x · sigmoid(x). */
  silu(x: string): string {
    if (this.choices.silu === 'quick-gelu') return this.g.opIn(MS_DOMAIN, 'QuickGelu', [x], { alpha: attr.float(1) });
    return this.g.op('Mul', [x, this.g.op('Sigmoid', [x])]);
  }

  /** CLIP's quick_gelu: x · sigmoid(1.702 x). */
  quickGelu(x: string): string {
    return this.g.opIn(MS_DOMAIN, 'QuickGelu', [x], { alpha: attr.float(1.702) });
  }

  /** Exact GELU, 0.5·x·(1 + erf(x/√2)) (torch's F.gelu default). */
  gelu(x: string): string {
    switch (this.choices.gelu) {
      case 'onnx-gelu':
        return this.g.op('Gelu', [x]);
      case 'ms-gelu':
        return this.g.opIn(MS_DOMAIN, 'Gelu', [x]);
      case 'erf': {
        const erf = this.g.op('Erf', [this.g.op('Div', [x, this.constant(Math.SQRT2)])]);
        return this.g.op('Mul', [this.g.op('Mul', [x, this.g.op('Add', [erf, this.constant(1)])]), this.constant(0.5)]);
      }
    }
  }

  /**
   * LDM's GEGLU: `proj` (Linear to 2·inner) split into value (first half) and gate (second half) on the last axis;
   * returns value · gelu(gate), [..., inner].
   */
  async geglu(x: string, prefix: string): Promise<string> {
    const [out2, inF] = this.weights.shape(`${prefix}.weight`) as [number, number];
    const inner = out2 / 2;
    const hasBias = this.weights.has(`${prefix}.bias`);
    if (this.choices.geglu === 'split-weights') {
      // One checkpoint read, two initializers: Wᵀ halves [in, inner] each.
      const raw = await this.weights.float32(`${prefix}.weight`);
      const valueW = await this.w.constant(`${prefix}.weight.value`, transpose2d(raw.subarray(0, inner * inF), inner, inF), [inF, inner]);
      const gateW = await this.w.constant(`${prefix}.weight.gate`, transpose2d(raw.subarray(inner * inF), inner, inF), [inF, inner]);
      let value = this.g.op('MatMul', [x, valueW]);
      let gate = this.g.op('MatMul', [x, gateW]);
      if (hasBias) {
        const b = await this.weights.float32(`${prefix}.bias`);
        value = this.g.op('Add', [value, await this.w.constant(`${prefix}.bias.value`, b.slice(0, inner), [inner])]);
        gate = this.g.op('Add', [gate, await this.w.constant(`${prefix}.bias.gate`, b.slice(inner), [inner])]);
      }
      return this.g.op('Mul', [value, this.gelu(gate)]);
    }
    const h = await this.linear(x, prefix);
    const value = this.g.op('Slice', [h, this.g.constInt64([0]), this.g.constInt64([inner]), this.g.constInt64([-1])]);
    const gate = this.g.op('Slice', [h, this.g.constInt64([inner]), this.g.constInt64([out2]), this.g.constInt64([-1])]);
    return this.g.op('Mul', [value, this.gelu(gate)]);
  }

  /**
   * Scaled dot-product attention, softmax(q·kᵀ/√d)·v per head. q [B, S, D], k and v [B, L, D] (D = heads·d,
   * already projected); returns [B, S, D]. The scale is 1/√(D/heads).
   */
  attention(q: string, k: string, v: string, heads: number, opts: AttentionOptions = {}): string {
    if (this.choices.attention === 'multi-head-attention') {
      const inputs = [q, k, v];
      if (opts.attentionBias !== undefined) inputs.push('', '', opts.attentionBias);
      return this.g.opIn(MS_DOMAIN, 'MultiHeadAttention', inputs, { num_heads: attr.int(heads) });
    }
    const split = this.g.constInt64([0, 0, heads, -1]);
    const qh = this.g.op('Transpose', [this.g.op('Reshape', [q, split])], { perm: attr.ints([0, 2, 1, 3]) });
    const kt = this.g.op('Transpose', [this.g.op('Reshape', [k, split])], { perm: attr.ints([0, 2, 3, 1]) });
    const vh = this.g.op('Transpose', [this.g.op('Reshape', [v, split])], { perm: attr.ints([0, 2, 1, 3]) });
    // The scale needs the head width, known only from shapes at run time: 1/√d = 1/√(D/heads).
    const d = this.g.op('Cast', [this.g.op('Shape', [q], { start: attr.int(2) })], { to: attr.int(this.dataType) });
    const scale = this.g.op('Reciprocal', [this.g.op('Sqrt', [this.g.op('Div', [d, this.constant(heads)])])]);
    let scores = this.g.op('Mul', [this.g.op('MatMul', [qh, kt]), scale]);
    if (opts.attentionBias !== undefined) scores = this.g.op('Add', [scores, opts.attentionBias]);
    const probs = this.g.op('Softmax', [scores], { axis: attr.int(-1) });
    const out = this.g.op('Transpose', [this.g.op('MatMul', [probs, vh])], { perm: attr.ints([0, 2, 1, 3]) });
    return this.g.op('Reshape', [out, this.g.constInt64([0, 0, -1])]);
  }
}

/** Row-major [rows, cols] → [cols, rows]. */
export function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[base + c]!;
  }
  return out;
}

/** A GraphWeights transform: a torch Linear (or 1×1 conv) weight [out, in(, 1, 1)] → MatMul's [in, out]. */
export function transposeToInOut(data: Float32Array, shape: readonly number[]): { data: Float32Array; dims: number[] } {
  const [out, inF] = shape as [number, number];
  if (shape.slice(2).some((d) => d !== 1)) throw new RangeError(`not a linear weight: [${shape.join(', ')}]`);
  return { data: transpose2d(data, out, inF), dims: [inF, out] };
}
