/**
 * Merging LoRAs into weights, as ComfyUI does by default (comfy/weight_adapter/lora.py `calculate_weight`, merged
 * into the parameter by comfy/model_patcher.py): in float32,
 *
 *   W′ = W + strength · (alpha / rank) · (up.flatten(1) @ down.flatten(1)).reshape(W.shape)
 *
 * with rank = rows of down and alpha = rank when the file has none (scale 1). A LyCORIS LoCon module with a
 * `lora_mid` [rank, rank, kh, kw] first folds mid into down (down′[r, i, y, x] = Σ_s down[s, i] · mid[r, s, y, x],
 * ComfyUI's transpose/mm/reshape), then merges as above. UNet modules use `strengthModel`, text-encoder modules
 * `strengthClip`; several LoRAs on one weight add up in the order given.
 *
 * The products are large for real LoRAs (out·in·rank MACs per module; 10¹⁰–10¹¹ for a full SD-1 LoRA at rank
 * 32–128), so above `jsMaxMacs` they run in a small ONNX Runtime CPU session (MatMul·scale + W, MLAS, all cores);
 * tiny ones stay in plain JS, where a session call would cost more than the arithmetic.
 */
import { DataType } from '../../onnx-writer/graph-builder.js';
import { CpuComputeSession } from '../../runtime/cpu-compute.js';
import { createGraphBuilder } from '../build/graph-ops.js';
import type { TensorFile } from '../tensor-file.js';
import type { LoraComponent, LoraMatch, LoraMatchEntry } from './key-map.js';
import type { WeightPatchFn } from './patched-weights.js';

/**
 * Measured on this project's 2-core CPU host under load (ORT 1.30, Node 20; W + s·A@B with m×k×n MACs): plain JS
 * 0.1–0.2 GMAC/s; the ORT session ≈0.1–0.3 ms a call, 6–8 GMAC/s from 10⁶ MACs up. They cross near 10⁴ MACs:
 * 64×4×64 JS 0.18 ms / ORT 0.11 ms, 128×8×128 0.64 / 0.21 ms, 320×32×320 14 / 0.41 ms, 1280×64×1280 744 / 129 ms.
 * A full SD-1 LoRA (264 modules: every transformer Linear/1×1 and CLIP-L's q/k/v/out/fc1/fc2) merged in 3.4 s at
 * rank 32 (1.1·10¹⁰ MACs) and 5.0 s at rank 128 (4.5·10¹⁰), tensors already in memory; JS would take minutes.
 */
export const DEFAULT_JS_MAX_MACS = 1 << 14;

export interface LoraMergerOptions {
  /** Products of at most this many multiply-adds are done in JS; larger ones in ONNX Runtime. */
  readonly jsMaxMacs?: number;
  /** ONNX Runtime intra-op threads (default: ORT's, all cores). */
  readonly intraOpNumThreads?: number;
}

/** W + s·(A@B) and A@B in float32, in JS or an ONNX Runtime session by size. Release when done. */
export class LoraMerger {
  /** Calls done each way and the multiply-adds they did. */
  readonly stats = { js: 0, ort: 0, jsMacs: 0, ortMacs: 0 };

  private constructor(
    private readonly addSession: CpuComputeSession,
    private readonly mulSession: CpuComputeSession,
    readonly jsMaxMacs: number,
  ) {}

  static async create(opts: LoraMergerOptions = {}): Promise<LoraMerger> {
    const add = await CpuComputeSession.create(addProductModel(), opts.intraOpNumThreads);
    const mul = await CpuComputeSession.create(matmulModel(), opts.intraOpNumThreads);
    return new LoraMerger(add, mul, opts.jsMaxMacs ?? DEFAULT_JS_MAX_MACS);
  }

  async release(): Promise<void> {
    await this.addSession.release();
    await this.mulSession.release();
  }

  /** `w` [m, n] + `scale` · (`a` [m, k] @ `b` [k, n]), as a new array (float32 throughout). */
  async addProduct(w: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, scale: number): Promise<Float32Array> {
    checkSizes(w, a, b, m, k, n);
    const macs = m * k * n;
    if (macs <= this.jsMaxMacs) {
      this.stats.js++;
      this.stats.jsMacs += macs;
      return jsAddProduct(w, a, b, m, k, n, scale);
    }
    this.stats.ort++;
    this.stats.ortMacs += macs;
    return this.addSession.run({
      W: { data: w, dims: [m, n] },
      A: { data: a, dims: [m, k] },
      B: { data: b, dims: [k, n] },
      S: { data: Float32Array.of(scale), dims: [] },
    }, 'Y');
  }

  /** `a` [m, k] @ `b` [k, n]. */
  async matmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Promise<Float32Array> {
    if (a.length !== m * k || b.length !== k * n) throw new RangeError(`matmul: [${m}, ${k}] @ [${k}, ${n}] given ${a.length} and ${b.length} values`);
    const macs = m * k * n;
    if (macs <= this.jsMaxMacs) {
      this.stats.js++;
      this.stats.jsMacs += macs;
      return jsMatmul(a, b, m, k, n);
    }
    this.stats.ort++;
    this.stats.ortMacs += macs;
    return this.mulSession.run({ A: { data: a, dims: [m, k] }, B: { data: b, dims: [k, n] } }, 'Y');
  }
}

function checkSizes(w: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number): void {
  if (w.length !== m * n || a.length !== m * k || b.length !== k * n) {
    throw new RangeError(`W [${m}, ${n}] + A [${m}, ${k}] @ B [${k}, ${n}] given ${w.length}, ${a.length} and ${b.length} values`);
  }
}

function addProductModel(): Uint8Array {
  const g = createGraphBuilder('lora_add_product');
  const w = g.addInput('W', DataType.FLOAT, ['m', 'n']);
  const a = g.addInput('A', DataType.FLOAT, ['m', 'k']);
  const b = g.addInput('B', DataType.FLOAT, ['k', 'n']);
  const s = g.addInput('S', DataType.FLOAT, []);
  g.op('Add', [w, g.op('Mul', [g.op('MatMul', [a, b]), s])], {}, 'Y');
  g.addOutput('Y', DataType.FLOAT, ['m', 'n']);
  return g.serialize().model;
}

function matmulModel(): Uint8Array {
  const g = createGraphBuilder('lora_matmul');
  const a = g.addInput('A', DataType.FLOAT, ['m', 'k']);
  const b = g.addInput('B', DataType.FLOAT, ['k', 'n']);
  g.op('MatMul', [a, b], {}, 'Y');
  g.addOutput('Y', DataType.FLOAT, ['m', 'n']);
  return g.serialize().model;
}

/** A @ B in float32 (each product's sum rounded once), i-k-j order. */
export function jsMatmul(a: Float32Array, b: Float32Array, m: number, k: number, n: number): Float32Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    const row = i * n;
    for (let p = 0; p < k; p++) {
      const av = a[i * k + p]!;
      if (av === 0) continue;
      const brow = p * n;
      for (let j = 0; j < n; j++) out[row + j]! += av * b[brow + j]!;
    }
  }
  return Float32Array.from(out);
}

/** W + s·(A@B) in float32: the product rounded to float32, scaled, added (torch's order). */
export function jsAddProduct(w: Float32Array, a: Float32Array, b: Float32Array, m: number, k: number, n: number, scale: number): Float32Array {
  const prod = jsMatmul(a, b, m, k, n);
  const s = Math.fround(scale);
  const out = new Float32Array(m * n);
  for (let i = 0; i < out.length; i++) out[i] = w[i]! + Math.fround(prod[i]! * s);
  return out;
}

const count = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/**
 * The down matrix of a module as [rank, in·kh·kw] float32: `down` itself, or with a LoCon `mid` folded in
 * (comfy/weight_adapter/lora.py: mm(down.T.flatten(1), mid.T.flatten(1)).reshape(in, rank, kh, kw).T).
 */
export async function effectiveDown(file: TensorFile, entry: LoraMatchEntry['module'], merger: LoraMerger): Promise<Float32Array> {
  const down = await file.readFloat32(entry.down);
  if (entry.mid === null) return down;
  const mid = await file.readFloat32(entry.mid);
  const r = entry.rank;
  const inC = entry.downShape[1]!;
  const [, , kh, kw] = entry.midShape as [number, number, number, number];
  const k2 = kh * kw;
  // Dt [in, r_s] = down[s, i] transposed; Mt [r_s, r·kh·kw] with Mt[s, (r, y, x)] = mid[r, s, y, x].
  const dt = new Float32Array(inC * r);
  for (let s = 0; s < r; s++) for (let i = 0; i < inC; i++) dt[i * r + s] = down[s * inC + i]!;
  const mt = new Float32Array(r * r * k2);
  for (let ro = 0; ro < r; ro++) for (let s = 0; s < r; s++) for (let q = 0; q < k2; q++) mt[s * r * k2 + ro * k2 + q] = mid[(ro * r + s) * k2 + q]!;
  const p = await merger.matmul(dt, mt, inC, r, r * k2); // [in, r, kh, kw]
  const out = new Float32Array(r * inC * k2);
  for (let i = 0; i < inC; i++) for (let ro = 0; ro < r; ro++) for (let q = 0; q < k2; q++) out[(ro * inC + i) * k2 + q] = p[(i * r + ro) * k2 + q]!;
  return out;
}

/** One LoRA as applied: its open file, its match against the model, and the two strengths. */
export interface LoraApplication {
  readonly file: TensorFile;
  readonly match: LoraMatch;
  /** Applied to UNet modules (ComfyUI's strength_model). */
  readonly strengthModel: number;
  /** Applied to text-encoder modules (ComfyUI's strength_clip). */
  readonly strengthClip: number;
}

export interface LoraPatches {
  /** Canonical weight name → its patch, per part. */
  readonly unet: ReadonlyMap<string, WeightPatchFn>;
  readonly textEncoder: ReadonlyMap<string, WeightPatchFn>;
}

interface Source {
  readonly file: TensorFile;
  readonly entry: LoraMatchEntry;
  readonly scale: number;
}

/**
 * The weight patches of a LoRA stack: for each weight any module changes (at a non-zero strength), a function
 * that merges every such module into it. Nothing is read until a patch runs; the files must stay open until then.
 */
export function loraPatches(apps: readonly LoraApplication[], merger: LoraMerger): LoraPatches {
  const sources: Record<LoraComponent, Map<string, Source[]>> = { unet: new Map(), textEncoder: new Map() };
  for (const app of apps) {
    for (const entry of app.match.entries) {
      const strength = entry.target.component === 'unet' ? app.strengthModel : app.strengthClip;
      if (!Number.isFinite(strength)) throw new RangeError(`LoRA strength ${strength} is not a number`);
      if (strength === 0) continue;
      const alpha = entry.module.alpha ?? entry.module.rank;
      const scale = (strength * alpha) / entry.module.rank;
      const list = sources[entry.target.component].get(entry.target.name) ?? [];
      list.push({ file: app.file, entry, scale });
      sources[entry.target.component].set(entry.target.name, list);
    }
  }
  const patches = (c: LoraComponent): Map<string, WeightPatchFn> => {
    const out = new Map<string, WeightPatchFn>();
    for (const [name, list] of sources[c]) out.set(name, (w, shape) => applySources(w, shape, list, merger));
    return out;
  };
  return { unet: patches('unet'), textEncoder: patches('textEncoder') };
}

async function applySources(w: Float32Array, shape: readonly number[], list: readonly Source[], merger: LoraMerger): Promise<Float32Array> {
  const cols = count(shape.slice(1));
  let result = w;
  for (const { file, entry, scale } of list) {
    const { module, target } = entry;
    const up = await file.readFloat32(module.up);
    const down = await effectiveDown(file, module, merger);
    const start = target.rows?.start ?? 0;
    const rows = target.rows?.count ?? shape[0]!;
    const region = result.subarray(start * cols, (start + rows) * cols);
    const merged = await merger.addProduct(region, up, down, rows, module.rank, cols, scale);
    if (rows * cols === result.length) result = merged;
    else {
      if (result === w) result = Float32Array.from(w);
      result.set(merged, start * cols);
    }
  }
  return result;
}
