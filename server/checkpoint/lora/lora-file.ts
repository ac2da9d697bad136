/**
 * What a LoRA file holds, read from its tensor names and shapes (never its file name): the low-rank modules
 * (kohya/A1111 `lora_up`/`lora_down`/`alpha`, LyCORIS LoCon with `lora_mid`, diffusers `_lora.up`/`.lora.up`/
 * `.lora_linear_layer.up`, PEFT `lora_A`/`lora_B`), tensors it does not understand, and which model family it was
 * made for when its keys, shapes or kohya metadata say so. Adapter kinds FuseGraph cannot merge yet (LoHa, LoKr,
 * DoRA, GLoRA, OFT/BOFT, full-weight diffs) are refused by name, never silently dropped; so are NaN/Inf values.
 *
 * Module keys are kept as the file spells them (`lora_unet_down_blocks_0_attentions_0_..._to_q`,
 * `unet.down_blocks.0....to_q`): key-map.ts resolves them against a model's own key list, as ComfyUI does.
 */
import { CheckpointError, type TensorFile } from '../tensor-file.js';

export type LoraFormat = 'kohya' | 'diffusers' | 'peft';

export interface LoraModule {
  /** The module key: the stored names without the role suffix (`lora_unet_..._to_q`, `unet....to_q`). */
  readonly key: string;
  readonly format: LoraFormat;
  /** Stored tensor names. `up` is [out, rank(, 1, 1)], `down` is [rank, in(, kh, kw)]. */
  readonly up: string;
  readonly down: string;
  /** LyCORIS LoCon/Tucker middle conv [rank, rank, kh, kw] (down and up are then 1×1), or null. */
  readonly mid: string | null;
  readonly upShape: readonly number[];
  readonly downShape: readonly number[];
  readonly midShape: readonly number[] | null;
  /** The `.alpha` scalar, or null when absent (then alpha = rank: scale 1). */
  readonly alpha: number | null;
  /** Rows of down. */
  readonly rank: number;
  /** Shape of up·down before it is reshaped onto the weight: [out, in] or [out, in, kh, kw]. */
  readonly deltaShape: readonly number[];
}

export type LoraFamily = 'sd1' | 'sd2' | 'sdxl';

export interface LoraDescription {
  readonly file: string;
  /** By module key, in file order. */
  readonly modules: ReadonlyMap<string, LoraModule>;
  /** Tensors that belong to no module (bundled embeddings, unknown adapters): count and first few. */
  readonly unknownKeys: { readonly count: number; readonly first: readonly string[] };
  /** The family the file was made for when something in it says so (SDXL is refused by matchLora), else null. */
  readonly family: { readonly value: LoraFamily; readonly reason: string } | null;
  /** Widths seen in the file, when a module shows them: the UNet's cross-attention context and the text encoder's. */
  readonly contextDim: number | null;
  readonly textWidth: number | null;
}

type Role = 'up' | 'down' | 'mid' | 'alpha';

/** Role suffixes, longest first where one ends another. */
const ROLES: readonly (readonly [suffix: string, role: Role, format: LoraFormat])[] = [
  ['.lora_up.weight', 'up', 'kohya'],
  ['.lora_down.weight', 'down', 'kohya'],
  ['.lora_mid.weight', 'mid', 'kohya'],
  ['.lora_linear_layer.up.weight', 'up', 'diffusers'],
  ['.lora_linear_layer.down.weight', 'down', 'diffusers'],
  ['_lora.up.weight', 'up', 'diffusers'],
  ['_lora.down.weight', 'down', 'diffusers'],
  ['.lora.up.weight', 'up', 'diffusers'],
  ['.lora.down.weight', 'down', 'diffusers'],
  ['.lora_B.default.weight', 'up', 'peft'],
  ['.lora_A.default.weight', 'down', 'peft'],
  ['.lora_B.weight', 'up', 'peft'],
  ['.lora_A.weight', 'down', 'peft'],
  ['.lora_B', 'up', 'peft'],
  ['.lora_A', 'down', 'peft'],
  ['.alpha', 'alpha', 'kohya'],
];

/** Adapter kinds recognised by their tensor names and refused (comfy/weight_adapter/*.py, LyCORIS). */
const REFUSED: readonly (readonly [pattern: RegExp, what: string])[] = [
  [/\.hada_(w[12]_[ab]|t[12])$/, 'LoHa (LyCORIS Hadamard-product, hada_w1_a …)'],
  [/\.lokr_(w[12](_[ab])?|t[12])$/, 'LoKr (LyCORIS Kronecker-product, lokr_w1 …)'],
  [/\.(dora_scale|lora_magnitude_vector(\.default)?(\.weight)?)$/, 'DoRA (weight-decomposed, dora_scale)'],
  [/\.[ab][12]\.weight$/, 'GLoRA (a1/a2/b1/b2)'],
  [/\.(oft_blocks|oft_diag|oft_R|boft_\w+)$/, 'OFT/BOFT (orthogonal fine-tuning)'],
  [/\.(diff|diff_b|w_norm|b_norm)$/, 'full-weight difference ("diff", LyCORIS full/norm)'],
];

const UNKNOWN_LISTED = 10;

function roleOf(name: string): { key: string; role: Role; format: LoraFormat } | null {
  for (const [suffix, role, format] of ROLES) {
    if (name.endsWith(suffix) && name.length > suffix.length) return { key: name.slice(0, -suffix.length), role, format };
  }
  return null;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;
const count = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

/** The first non-finite value's index, or -1. */
function firstNonFinite(data: Float32Array): number {
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) return i;
  return -1;
}

/**
 * Reads `file` as a LoRA. Reads every tensor once (alphas, and the NaN/Inf check), one at a time; keeps none.
 * Throws CheckpointError for refused adapter kinds, incomplete or inconsistent modules, non-finite values and a
 * file with no LoRA module at all. The TensorFile must stay open for the merge.
 */
export async function readLora(file: TensorFile): Promise<LoraDescription> {
  const where = file.path;
  const fail = (why: string): never => {
    throw new CheckpointError(`${where}: ${why}`, where);
  };

  const refused = new Map<string, string>();
  for (const name of file.tensors.keys()) {
    for (const [pattern, what] of REFUSED) {
      if (pattern.test(name) && !refused.has(what)) refused.set(what, name);
    }
  }
  if (refused.size > 0) {
    const [what, example] = refused.entries().next().value as [string, string];
    const more = refused.size > 1 ? ` (also ${[...refused.keys()].slice(1).map((w) => w.split(' ')[0]).join(', ')})` : '';
    fail(`${what.split(' ')[0]} LoRAs are not supported yet: this file is a ${what} adapter${more}, e.g. ${example}; only plain LoRA/LoCon (lora_up/lora_down, lora_A/lora_B) can be merged`);
  }

  interface Parts {
    format: LoraFormat;
    up?: string;
    down?: string;
    mid?: string;
    alpha?: string;
  }
  const parts = new Map<string, Parts>();
  const unknown: string[] = [];
  for (const name of file.tensors.keys()) {
    const r = roleOf(name);
    if (r === null) {
      unknown.push(name);
      continue;
    }
    let p = parts.get(r.key);
    if (p === undefined) {
      p = { format: r.format };
      parts.set(r.key, p);
    }
    if (r.role !== 'alpha') p.format = r.format;
    if (p[r.role] !== undefined) fail(`${p[r.role]} and ${name} are both the ${r.role} of LoRA module ${r.key}`);
    p[r.role] = name;
  }

  const modules = new Map<string, LoraModule>();
  for (const [key, p] of parts) {
    if (p.up === undefined && p.down === undefined) {
      // An alpha with nothing to scale (some trainers keep alphas of modules they then dropped): not a module.
      unknown.push(p.alpha!);
      continue;
    }
    if (p.up === undefined || p.down === undefined) fail(`LoRA module ${key} has ${p.up ? 'an up' : 'a down'} tensor (${p.up ?? p.down}) but no ${p.up ? 'down' : 'up'}`);
    const up = file.tensors.get(p.up!)!;
    const down = file.tensors.get(p.down!)!;
    const mid = p.mid === undefined ? null : file.tensors.get(p.mid)!;
    for (const t of [up, down, mid]) {
      if (t && !['F32', 'F16', 'BF16', 'F64'].includes(t.dtype)) fail(`${t.name} is ${t.dtype}; LoRA weights must be floating point`);
    }
    const us = up.shape;
    const ds = down.shape;
    if (us.length < 2 || ds.length < 2 || us.length !== ds.length || (us.length !== 2 && us.length !== 4)) {
      fail(`LoRA module ${key}: up ${fmt(us)} and down ${fmt(ds)} are not a pair of Linear or Conv weights`);
    }
    const rank = ds[0]!;
    if (us[1] !== rank || rank < 1) fail(`LoRA module ${key}: up ${fmt(us)} does not take the ${rank} rows of down ${fmt(ds)}`);
    if (us.length === 4 && (us[2] !== 1 || us[3] !== 1)) fail(`LoRA module ${key}: up ${fmt(us)} is not a 1×1 convolution`);
    let deltaShape: number[] = [us[0]!, ...ds.slice(1)];
    if (mid) {
      const ms = mid.shape;
      if (ms.length !== 4 || ms[0] !== rank || ms[1] !== rank || ds.length !== 4 || ds[2] !== 1 || ds[3] !== 1) {
        fail(`LoRA module ${key}: mid ${fmt(ms)} with down ${fmt(ds)} and up ${fmt(us)} is not a LoCon (Tucker) decomposition: expected mid [${rank}, ${rank}, kh, kw] and 1×1 up/down`);
      }
      deltaShape = [us[0]!, ds[1]!, ms[2]!, ms[3]!];
    }
    let alpha: number | null = null;
    if (p.alpha !== undefined) {
      const a = file.tensors.get(p.alpha)!;
      if (count(a.shape) !== 1) fail(`${p.alpha} is ${fmt(a.shape)}; a LoRA alpha is one number`);
      alpha = (await file.readFloat32(p.alpha))[0]!;
      if (!Number.isFinite(alpha)) fail(`${p.alpha} is ${alpha}: the LoRA is corrupt (a non-finite alpha)`);
    }
    modules.set(key, {
      key,
      format: p.format,
      up: up.name,
      down: down.name,
      mid: mid?.name ?? null,
      upShape: us,
      downShape: ds,
      midShape: mid?.shape ?? null,
      alpha,
      rank,
      deltaShape,
    });
  }
  if (modules.size === 0) {
    const first = [...file.tensors.keys()].slice(0, 3).join(', ') || 'none';
    fail(`not a LoRA: none of its ${file.tensors.size} tensors is a lora_up/lora_down (or lora_A/lora_B) pair (first: ${first})`);
  }

  for (const m of modules.values()) {
    for (const name of [m.up, m.down, m.mid]) {
      if (name === null) continue;
      const data = await file.readFloat32(name);
      const bad = firstNonFinite(data);
      if (bad >= 0) fail(`${name} holds ${data[bad]} (element ${bad} of ${data.length}): the LoRA is corrupt (NaN/Inf weights); it was not merged`);
    }
  }

  const contextDim = widthOf(modules, /attn2[._]to_[kv]$/);
  const textWidth = widthOf(modules, /(self_attn[._][qkv]_proj|mlp[._]fc1)$/);
  return {
    file: where,
    modules,
    unknownKeys: { count: unknown.length, first: unknown.slice(0, UNKNOWN_LISTED) },
    family: familyOf(file, modules, contextDim, textWidth),
    contextDim,
    textWidth,
  };
}

/** The input width of the modules whose key matches `pattern` (the first one found), or null. */
function widthOf(modules: ReadonlyMap<string, LoraModule>, pattern: RegExp): number | null {
  for (const m of modules.values()) if (pattern.test(m.key) && !/^(lora_te2_|text_encoder_2\.)/.test(m.key)) return m.downShape[1]!;
  return null;
}

function familyOf(file: TensorFile, modules: ReadonlyMap<string, LoraModule>, contextDim: number | null, textWidth: number | null): LoraDescription['family'] {
  for (const k of modules.keys()) {
    if (k.startsWith('lora_te2_') || k.startsWith('text_encoder_2.')) return { value: 'sdxl', reason: `a second text encoder (${k})` };
  }
  if (contextDim === 2048) return { value: 'sdxl', reason: 'cross-attention context 2048 wide' };
  if (contextDim === 1024) return { value: 'sd2', reason: 'cross-attention context 1024 wide (OpenCLIP ViT-H)' };
  if (contextDim === 768) return { value: 'sd1', reason: 'cross-attention context 768 wide (CLIP ViT-L)' };
  if (textWidth === 1024) return { value: 'sd2', reason: 'text encoder 1024 wide (OpenCLIP ViT-H)' };
  if (textWidth === 768) return { value: 'sd1', reason: 'text encoder 768 wide (CLIP ViT-L)' };
  const meta = file.metadata;
  const base = meta?.get('ss_base_model_version') ?? '';
  const arch = meta?.get('modelspec.architecture') ?? '';
  if (base.startsWith('sdxl') || arch.startsWith('stable-diffusion-xl')) return { value: 'sdxl', reason: `its metadata (${base || arch})` };
  if (base.startsWith('sd_v2') || meta?.get('ss_v2') === 'True' || arch.startsWith('stable-diffusion-v2')) return { value: 'sd2', reason: `its metadata (${base || arch || 'ss_v2'})` };
  if (base.startsWith('sd_v1') || arch.startsWith('stable-diffusion-v1')) return { value: 'sd1', reason: `its metadata (${base || arch})` };
  return null;
}
