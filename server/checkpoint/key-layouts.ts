/**
 * Where each component lives in a checkpoint's key space, and how other layouts' names map onto the canonical ones
 * (LDM module paths without the checkpoint prefix: the UNet's `input_blocks.1.1.proj_in.weight`, the VAE's
 * `decoder.up.0.block.0.conv1.weight`, CLIP's `text_model.encoder.layers.0.mlp.fc1.weight`, OpenCLIP's
 * `transformer.resblocks.0.attn.in_proj_weight`).
 *
 * A component's tensors are gathered into a KeyTable (canonical name → stored name and shape); detection, the
 * consistency check and the Weights view all read that table, so a diffusers-named file goes through exactly the
 * same checks as an LDM one once its names are mapped.
 */
import { CheckpointError, type TensorFile } from './tensor-file.js';
import type { Weights } from './weights.js';

export const LDM_UNET_PREFIX = 'model.diffusion_model.';
export const LDM_EMA_PREFIX = 'model_ema.';
export const LDM_VAE_PREFIX = 'first_stage_model.';
export const LDM_CLIP_PREFIX = 'cond_stage_model.transformer.';
export const LDM_OPEN_CLIP_PREFIX = 'cond_stage_model.model.';
export const DIFFUSERS_UNET_PREFIX = 'unet.';
export const DIFFUSERS_VAE_PREFIX = 'vae.';
export const DIFFUSERS_TEXT_ENCODER_PREFIX = 'text_encoder.';

/** Prefixes whose keys belong to some Stable Diffusion part, understood or refused by name (never "unknown"). */
export const KNOWN_PREFIXES: readonly string[] = [
  LDM_UNET_PREFIX,
  LDM_EMA_PREFIX,
  LDM_VAE_PREFIX,
  'cond_stage_model.',
  'conditioner.',
  DIFFUSERS_UNET_PREFIX,
  DIFFUSERS_VAE_PREFIX,
  DIFFUSERS_TEXT_ENCODER_PREFIX,
];

/**
 * Non-weight buffers and unused heads that real checkpoints carry: LDM's noise-schedule buffers (ldm/models/diffusion/
 * ddpm.py `register_schedule`), the EMA bookkeeping, CLIP's position_ids and OpenCLIP's projection / logit scale.
 */
const KNOWN_EXTRA_KEYS: ReadonlySet<string> = new Set([
  'betas',
  'alphas_cumprod',
  'alphas_cumprod_prev',
  'sqrt_alphas_cumprod',
  'sqrt_one_minus_alphas_cumprod',
  'log_one_minus_alphas_cumprod',
  'sqrt_recip_alphas_cumprod',
  'sqrt_recipm1_alphas_cumprod',
  'posterior_variance',
  'posterior_log_variance_clipped',
  'posterior_mean_coef1',
  'posterior_mean_coef2',
  'logvar',
  'lvlb_weights',
  'model_ema.decay',
  'model_ema.num_updates',
  'cond_stage_model.transformer.text_model.embeddings.position_ids',
  'cond_stage_model.transformer.embeddings.position_ids',
  'text_encoder.text_model.embeddings.position_ids',
  'cond_stage_model.model.logit_scale',
  'cond_stage_model.model.text_projection',
  'cond_stage_model.model.attn_mask',
  'text_encoder.logit_scale',
]);

export function isKnownExtraKey(stored: string): boolean {
  return KNOWN_EXTRA_KEYS.has(stored);
}

export interface KeyEntry {
  readonly stored: string;
  readonly shape: readonly number[];
}

/** One component's tensors under canonical names. */
export type KeyTable = ReadonlyMap<string, KeyEntry>;

/**
 * The tensors of `file` under `prefix`, named by `rename(rest)` (null drops the key). Two stored keys that rename to
 * the same canonical name are an error: the file says the same tensor twice.
 */
export function keyTable(file: TensorFile, prefix: string, rename: (rest: string) => string | null = (r) => r): Map<string, KeyEntry> {
  const table = new Map<string, KeyEntry>();
  for (const [stored, t] of file.tensors) {
    if (!stored.startsWith(prefix)) continue;
    const name = rename(stored.slice(prefix.length));
    if (name === null) continue;
    const prior = table.get(name);
    if (prior) throw new CheckpointError(`${file.path}: ${prior.stored} and ${stored} are both ${name}`, file.path);
    table.set(name, { stored, shape: t.shape });
  }
  return table;
}

export function hasPrefix(file: TensorFile, prefix: string): boolean {
  for (const k of file.tensors.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

/** The stored name of a UNet tensor's EMA copy: LDM's LitEma drops the dots (`model_ema.diffusion_modelinput_blocks00weight`). */
export function emaKeyFor(canonicalUnetName: string): string {
  return LDM_EMA_PREFIX + ('diffusion_model.' + canonicalUnetName).split('.').join('');
}

/** Very old SD-1 files lack HF transformers' `text_model.` level (ComfyUI SD15.process_clip_state_dict adds it). */
export function clipCanonicalName(rest: string): string {
  return rest.startsWith('text_model.') ? rest : `text_model.${rest}`;
}

/**
 * A Weights view of `file`: `names` maps each canonical name to its stored tensor, `shapes` gives the shape the view
 * reports (the stored shape unless a reshape, e.g. a diffusers VAE Linear [C,C] seen as LDM's 1×1 conv [C,C,1,1],
 * which keeps the element order).
 */
export function tableWeights(file: TensorFile, names: ReadonlyMap<string, string>, shapes: ReadonlyMap<string, readonly number[]>): Weights {
  const stored = (name: string): string => {
    const s = names.get(name);
    if (s === undefined) throw new CheckpointError(`${file.path}: the checkpoint has no tensor for ${name}`, file.path);
    return s;
  };
  return {
    has: (name) => names.has(name),
    shape: (name) => shapes.get(name) ?? file.tensors.get(stored(name))!.shape,
    float32: (name) => file.readFloat32(stored(name)),
    names: () => names.keys(),
  };
}

/* ------------------------------------------------------------------ diffusers → LDM */

const RESNET_DIFFUSERS_TO_LDM_UNET: Readonly<Record<string, string>> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

function renameResnet(rest: string, map: Readonly<Record<string, string>>): string | null {
  const dot = rest.indexOf('.');
  if (dot < 0) return null;
  const head = rest.slice(0, dot);
  const to = map[head];
  return to === undefined ? null : `${to}${rest.slice(dot)}`;
}

/** Counts `${prefix}N.` indices present among `names` as 0..n-1 without gaps. */
export function countIndexed(names: Iterable<string>, prefix: string, suffix = ''): number {
  const seen = new Set<number>();
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const m = /^(\d+)\./.exec(n.slice(prefix.length));
    if (m && (suffix === '' || n.slice(prefix.length + m[0].length).startsWith(suffix))) seen.add(Number(m[1]));
  }
  let k = 0;
  while (seen.has(k)) k++;
  return k;
}

/**
 * diffusers UNet2DConditionModel names → LDM UNetModel names (the inverse of ComfyUI's comfy/utils.py
 * `unet_to_diffusers`). `names` are all the UNet's diffusers names, needed for the per-level block counts; returns
 * null for a name it does not place (reported as an unknown key).
 */
export function diffusersUnetRenamer(names: readonly string[]): (rest: string) => string | null {
  const levels = countIndexed(names, 'down_blocks.');
  const nres = countIndexed(names, 'down_blocks.0.resnets.');
  const upAttn = (u: number): boolean => names.some((n) => n.startsWith(`up_blocks.${u}.attentions.`));
  const basic: Readonly<Record<string, string>> = {
    'conv_in.': 'input_blocks.0.0.',
    'time_embedding.linear_1.': 'time_embed.0.',
    'time_embedding.linear_2.': 'time_embed.2.',
    'conv_norm_out.': 'out.0.',
    'conv_out.': 'out.2.',
  };
  return (rest) => {
    for (const [from, to] of Object.entries(basic)) if (rest.startsWith(from)) return to + rest.slice(from.length);
    let m = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(rest);
    if (m) {
      const n = 1 + Number(m[1]) * (nres + 1) + Number(m[3]);
      if (m[2] === 'attentions') return `input_blocks.${n}.1.${m[4]}`;
      const r = renameResnet(m[4]!, RESNET_DIFFUSERS_TO_LDM_UNET);
      return r === null ? null : `input_blocks.${n}.0.${r}`;
    }
    m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(rest);
    if (m) return `input_blocks.${1 + Number(m[1]) * (nres + 1) + nres}.0.op.${m[2]}`;
    m = /^mid_block\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(rest);
    if (m) {
      if (m[1] === 'attentions') return m[2] === '0' ? `middle_block.1.${m[3]}` : null;
      const r = renameResnet(m[3]!, RESNET_DIFFUSERS_TO_LDM_UNET);
      return r === null ? null : `middle_block.${m[2] === '0' ? 0 : 2}.${r}`;
    }
    m = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)$/.exec(rest);
    if (m) {
      const n = Number(m[1]) * (nres + 1) + Number(m[3]);
      if (m[2] === 'attentions') return `output_blocks.${n}.1.${m[4]}`;
      const r = renameResnet(m[4]!, RESNET_DIFFUSERS_TO_LDM_UNET);
      return r === null ? null : `output_blocks.${n}.0.${r}`;
    }
    m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(rest);
    if (m) {
      const u = Number(m[1]);
      if (u >= levels) return null;
      return `output_blocks.${u * (nres + 1) + nres}.${upAttn(u) ? 2 : 1}.conv.${m[2]}`;
    }
    return null;
  };
}

const RESNET_DIFFUSERS_TO_LDM_VAE: Readonly<Record<string, string>> = {
  norm1: 'norm1',
  conv1: 'conv1',
  norm2: 'norm2',
  conv2: 'conv2',
  conv_shortcut: 'nin_shortcut',
  nin_shortcut: 'nin_shortcut',
};

const VAE_ATTENTION_DIFFUSERS_TO_LDM: Readonly<Record<string, string>> = {
  group_norm: 'norm',
  to_q: 'q',
  to_k: 'k',
  to_v: 'v',
  'to_out.0': 'proj_out',
  // diffusers < 0.14 names
  query: 'q',
  key: 'k',
  value: 'v',
  proj_attn: 'proj_out',
};

/** Whether a VAE key table (prefix removed) uses diffusers AutoencoderKL names. */
export function isDiffusersVaeNaming(names: Iterable<string>): boolean {
  for (const n of names) if (/^(en|de)coder\.(up_blocks|down_blocks|mid_block|conv_norm_out)\./.test(n)) return true;
  return false;
}

/**
 * diffusers AutoencoderKL names → LDM AutoencoderKL names (diffusers' convert_ldm_vae_checkpoint, inverted). NB:
 * diffusers' `decoder.up_blocks.U` is LDM's `decoder.up.(L-1-U)`: LDM numbers decoder levels by resolution.
 */
export function diffusersVaeRenamer(names: readonly string[]): (rest: string) => string | null {
  const levels = countIndexed(names, 'decoder.up_blocks.');
  return (rest) => {
    let m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(rest);
    if (m) {
      const r = renameResnet(m[3]!, RESNET_DIFFUSERS_TO_LDM_VAE);
      return r === null ? null : `encoder.down.${m[1]}.block.${m[2]}.${r}`;
    }
    m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(rest);
    if (m) return `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
    m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(rest);
    if (m) {
      const level = levels - 1 - Number(m[1]);
      const r = renameResnet(m[3]!, RESNET_DIFFUSERS_TO_LDM_VAE);
      return r === null || level < 0 ? null : `decoder.up.${level}.block.${m[2]}.${r}`;
    }
    m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(rest);
    if (m) {
      const level = levels - 1 - Number(m[1]);
      return level < 0 ? null : `decoder.up.${level}.upsample.conv.${m[2]}`;
    }
    m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.*)$/.exec(rest);
    if (m) {
      const r = renameResnet(m[3]!, RESNET_DIFFUSERS_TO_LDM_VAE);
      return r === null ? null : `${m[1]}.mid.block_${Number(m[2]) + 1}.${r}`;
    }
    m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0|query|key|value|proj_attn)\.(weight|bias)$/.exec(rest);
    if (m) return `${m[1]}.mid.attn_1.${VAE_ATTENTION_DIFFUSERS_TO_LDM[m[2]!]}.${m[3]}`;
    m = /^(encoder|decoder)\.conv_norm_out\.(.*)$/.exec(rest);
    if (m) return `${m[1]}.norm_out.${m[2]}`;
    if (/^(encoder|decoder)\.(conv_in|conv_out)\./.test(rest) || /^(post_)?quant_conv\./.test(rest)) return rest;
    return null;
  };
}

/* ------------------------------------------------------------------ expected keys */

export interface KeySpec {
  readonly name: string;
  readonly shape: readonly number[];
  /** A 1×1 conv weight [O,I,1,1] that some layouts store as Linear [O,I] (diffusers VAE attention). */
  readonly convOrLinear?: boolean;
}

export interface SpecCheck {
  /** Canonical name → stored name, for every spec found with the right shape. */
  readonly names: Map<string, string>;
  /** Canonical name → the shape the view reports (the spec's). */
  readonly shapes: Map<string, readonly number[]>;
  readonly missing: readonly string[];
  /** `name: stored [..] but expected [..]`. */
  readonly mismatched: readonly string[];
}

export const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
export const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

/** Checks that `table` has every spec'd tensor with the spec'd shape. */
export function checkSpecs(table: KeyTable, specs: readonly KeySpec[]): SpecCheck {
  const names = new Map<string, string>();
  const shapes = new Map<string, readonly number[]>();
  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const spec of specs) {
    const e = table.get(spec.name);
    if (!e) {
      missing.push(spec.name);
      continue;
    }
    const ok = sameShape(e.shape, spec.shape) || (spec.convOrLinear === true && sameShape(e.shape, spec.shape.slice(0, 2)));
    if (!ok) {
      mismatched.push(`${e.stored} is ${fmtShape(e.shape)}, expected ${fmtShape(spec.shape)}`);
      continue;
    }
    names.set(spec.name, e.stored);
    shapes.set(spec.name, spec.shape);
  }
  return { names, shapes, missing, mismatched };
}

/** "missing 3 tensors: a, b, c" / "… and 7 more" — for refusal messages. */
export function listProblems(check: SpecCheck, storedName: (canonical: string) => string, max = 5): string | null {
  const parts: string[] = [];
  const few = (xs: readonly string[]): string => xs.slice(0, max).join(', ') + (xs.length > max ? ` and ${xs.length - max} more` : '');
  if (check.missing.length > 0) parts.push(`missing ${check.missing.length} tensor${check.missing.length === 1 ? '' : 's'}: ${few(check.missing.map(storedName))}`);
  if (check.mismatched.length > 0) parts.push(`${check.mismatched.length} with the wrong shape: ${few(check.mismatched)}`);
  return parts.length > 0 ? parts.join('; ') : null;
}
