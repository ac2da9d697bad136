/**
 * Which model weight each LoRA module key changes. As ComfyUI (comfy/lora.py `model_lora_keys_unet`,
 * `model_lora_keys_clip`) does, the map is built FORWARD from the model's own key list: kohya's `lora_unet_<path
 * with . → _>` mangling is not invertible, so every name the model has is mangled in each dialect a LoRA may use:
 *
 * UNet (canonical names = LDM names without `model.diffusion_model.`), for each `<k>.weight`:
 *   `lora_unet_<k_>` (LDM-named kohya), `diffusion_model.<k>`; and with d = the diffusers name of k
 *   (down_blocks.i.attentions.j.transformer_blocks.0.attn1.to_q, down_blocks.i.resnets.j.conv1, ...):
 *   `lora_unet_<d_>`, `<d>`, `unet.<d>`, `.to_out.0` also as `.to_out`, and the attention-processor spelling
 *   `<d with .to_ → .processor.to_>` (diffusers' old attn-procs files), bare or `unet.`-prefixed.
 * CLIP text encoder (`text_model.…`), layer N, c ∈ self_attn.{q,k,v,out}_proj, mlp.fc{1,2}:
 *   `lora_te_text_model_encoder_layers_N_<c_>`, `lora_te1_…`, `text_encoder.text_model.encoder.layers.N.<c>`,
 *   `text_model.encoder.layers.N.<c>`.
 * OpenCLIP text encoder (SD-2, `transformer.resblocks.N.…`): the same HF-style keys (SD-2 LoRAs are trained on
 *   transformers' CLIPTextModel), q/k/v landing on row blocks of the fused `attn.in_proj_weight`.
 * PEFT's `base_model.model.` prefix is dropped before lookup.
 */
import type { ModelArchitecture, UnetArchitecture } from '../architecture.js';
import { CheckpointError } from '../tensor-file.js';
import type { Weights } from '../weights.js';
import type { LoraDescription, LoraModule } from './lora-file.js';

export type LoraComponent = 'unet' | 'textEncoder';

export interface LoraTarget {
  readonly component: LoraComponent;
  /** Canonical weight name (`input_blocks.1.1.proj_in.weight`, `text_model.encoder.layers.0.mlp.fc1.weight`). */
  readonly name: string;
  /** A block of rows of the weight (OpenCLIP's fused q/k/v), or null for the whole tensor. */
  readonly rows: { readonly start: number; readonly count: number } | null;
}

/** The model a LoRA is applied to: its architecture and each part's Weights (names and shapes; nothing is read). */
export interface LoraModel {
  readonly architecture: Pick<ModelArchitecture, 'family' | 'unet' | 'textEncoder'>;
  readonly unet: Weights;
  readonly textEncoder: Weights;
}

const RESNET_LDM_TO_DIFFUSERS: Readonly<Record<string, string>> = {
  'in_layers.0': 'norm1',
  'in_layers.2': 'conv1',
  'emb_layers.1': 'time_emb_proj',
  'out_layers.0': 'norm2',
  'out_layers.3': 'conv2',
  skip_connection: 'conv_shortcut',
};

const BASIC_LDM_TO_DIFFUSERS: Readonly<Record<string, string>> = {
  'input_blocks.0.0': 'conv_in',
  'time_embed.0': 'time_embedding.linear_1',
  'time_embed.2': 'time_embedding.linear_2',
  'out.0': 'conv_norm_out',
  'out.2': 'conv_out',
};

function resnetPart(rest: string): string | null {
  for (const [from, to] of Object.entries(RESNET_LDM_TO_DIFFUSERS)) {
    if (rest === from || rest.startsWith(`${from}.`)) return to + rest.slice(from.length);
  }
  return null;
}

/**
 * The diffusers UNet2DConditionModel module path of an LDM UNet module path (no `.weight`), or null when it has
 * none: comfy/utils.py `unet_to_diffusers` written the other way round (the inverse of key-layouts.ts's
 * diffusersUnetRenamer).
 */
export function ldmToDiffusersUnet(module: string, arch: Pick<UnetArchitecture, 'numResBlocks' | 'channelMult' | 'attentionLevels'>): string | null {
  const basic = BASIC_LDM_TO_DIFFUSERS[module];
  if (basic !== undefined) return basic;
  const nres = arch.numResBlocks;
  const levels = arch.channelMult.length;
  let m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(module);
  if (m) {
    const n = Number(m[1]) - 1;
    if (n < 0) return null;
    const level = Math.floor(n / (nres + 1));
    const i = n % (nres + 1);
    if (i === nres) return m[2] === '0' && m[3]!.startsWith('op') ? `down_blocks.${level}.downsamplers.0.conv${m[3]!.slice(2)}` : null;
    if (m[2] === '0') {
      const r = resnetPart(m[3]!);
      return r === null ? null : `down_blocks.${level}.resnets.${i}.${r}`;
    }
    return m[2] === '1' ? `down_blocks.${level}.attentions.${i}.${m[3]}` : null;
  }
  m = /^middle_block\.(\d)\.(.+)$/.exec(module);
  if (m) {
    if (m[1] === '1') return `mid_block.attentions.0.${m[2]}`;
    const r = resnetPart(m[2]!);
    return r === null ? null : `mid_block.resnets.${m[1] === '0' ? 0 : 1}.${r}`;
  }
  m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(module);
  if (m) {
    const n = Number(m[1]);
    const up = Math.floor(n / (nres + 1));
    const i = n % (nres + 1);
    const hasAttn = arch.attentionLevels[levels - 1 - up] === true;
    const sub = Number(m[2]);
    if (sub === 0) {
      const r = resnetPart(m[3]!);
      return r === null ? null : `up_blocks.${up}.resnets.${i}.${r}`;
    }
    if (sub === 1 && hasAttn) return `up_blocks.${up}.attentions.${i}.${m[3]}`;
    if (sub === (hasAttn ? 2 : 1) && i === nres && m[3]!.startsWith('conv')) return `up_blocks.${up}.upsamplers.0.conv${m[3]!.slice(4)}`;
    return null;
  }
  return null;
}

const LORA_CLIP_MAP: readonly (readonly [hf: string, kohya: string])[] = [
  ['self_attn.q_proj', 'self_attn_q_proj'],
  ['self_attn.k_proj', 'self_attn_k_proj'],
  ['self_attn.v_proj', 'self_attn_v_proj'],
  ['self_attn.out_proj', 'self_attn_out_proj'],
  ['mlp.fc1', 'mlp_fc1'],
  ['mlp.fc2', 'mlp_fc2'],
];

const underscored = (s: string): string => s.replace(/\./g, '_');

/** Every LoRA module key the model's weights answer to → the weight it changes. */
export function loraKeyMap(model: LoraModel): Map<string, LoraTarget> {
  const map = new Map<string, LoraTarget>();
  const put = (key: string, target: LoraTarget): void => {
    if (!map.has(key)) map.set(key, target);
  };

  const arch = model.architecture.unet;
  for (const name of model.unet.names()) {
    if (!name.endsWith('.weight')) continue;
    const k = name.slice(0, -'.weight'.length);
    const t: LoraTarget = { component: 'unet', name, rows: null };
    put(`lora_unet_${underscored(k)}`, t);
    put(`diffusion_model.${k}`, t);
    const d = ldmToDiffusersUnet(k, arch);
    if (d === null) continue;
    put(`lora_unet_${underscored(d)}`, t);
    const plain = [d];
    if (d.endsWith('.to_out.0')) plain.push(d.slice(0, -2));
    const spellings = [...plain];
    for (const p of plain) if (p.includes('.to_')) spellings.push(p.replace('.to_', '.processor.to_'));
    for (const s of spellings) {
      put(s, t);
      put(`unet.${s}`, t);
    }
  }

  const te = model.textEncoder;
  const kind = model.architecture.textEncoder.kind;
  const W = model.architecture.textEncoder.width;
  for (let layer = 0; layer < model.architecture.textEncoder.layers; layer++) {
    for (const [hf, kohya] of LORA_CLIP_MAP) {
      let target: LoraTarget | null = null;
      if (kind === 'clip') {
        const name = `text_model.encoder.layers.${layer}.${hf}.weight`;
        if (te.has(name)) target = { component: 'textEncoder', name, rows: null };
      } else {
        const p = `transformer.resblocks.${layer}`;
        const qkv = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj'].indexOf(hf);
        if (qkv >= 0) {
          const name = `${p}.attn.in_proj_weight`;
          if (te.has(name)) target = { component: 'textEncoder', name, rows: { start: qkv * W, count: W } };
        } else {
          const name = `${p}.${{ 'self_attn.out_proj': 'attn.out_proj', 'mlp.fc1': 'mlp.c_fc', 'mlp.fc2': 'mlp.c_proj' }[hf]!}.weight`;
          if (te.has(name)) target = { component: 'textEncoder', name, rows: null };
        }
      }
      if (target === null) continue;
      put(`lora_te_text_model_encoder_layers_${layer}_${kohya}`, target);
      put(`lora_te1_text_model_encoder_layers_${layer}_${kohya}`, target);
      put(`text_encoder.text_model.encoder.layers.${layer}.${hf}`, target);
      put(`text_model.encoder.layers.${layer}.${hf}`, target);
    }
  }
  return map;
}

export interface LoraMatchEntry {
  readonly module: LoraModule;
  readonly target: LoraTarget;
}

export interface LoraMatch {
  readonly lora: LoraDescription;
  /** Modules that change a weight of the model, in file order. */
  readonly entries: readonly LoraMatchEntry[];
  /** Module keys the model does not have (and the LoRA's unknown tensors): count and first few, for a warning. */
  readonly unmatched: { readonly count: number; readonly first: readonly string[] };
  /** How many modules change the UNet and the text encoder. */
  readonly unetModules: number;
  readonly textEncoderModules: number;
}

const UNMATCHED_LISTED = 10;
const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;
const count = (s: readonly number[]): number => s.reduce((a, b) => a * b, 1);

const FAMILY_NAMES: Readonly<Record<string, string>> = { sd1: 'SD-1', sd2: 'SD-2', 'sd2-v': 'SD-2', sdxl: 'SDXL' };

/**
 * Resolves each module of `lora` against `model`. Throws CheckpointError when the LoRA was made for another family
 * (SDXL; or SD-1 vs SD-2, by its keys, widths or metadata), when a module's shape does not fit the weight it names
 * (what a LoRA for another family looks like when its keys happen to exist), or when no module matches at all.
 */
export function matchLora(lora: LoraDescription, model: LoraModel): LoraMatch {
  const where = lora.file;
  const modelFamily = model.architecture.family === 'sd1' ? 'sd1' : 'sd2';
  const fam = lora.family;
  const hint = fam ? ` (the LoRA looks made for ${FAMILY_NAMES[fam.value]}: ${fam.reason})` : '';
  if (fam?.value === 'sdxl') {
    throw new CheckpointError(`${where}: this is an SDXL LoRA (${fam.reason}); it cannot be applied to this ${FAMILY_NAMES[model.architecture.family]} model (FuseGraph does not run SDXL models yet)`, where);
  }
  const realWidths = model.architecture.unet.contextDim === 768 || model.architecture.unet.contextDim === 1024;
  if (fam && realWidths && fam.value !== modelFamily) {
    throw new CheckpointError(`${where}: this LoRA was made for ${FAMILY_NAMES[fam.value]} models (${fam.reason}) but the model is ${FAMILY_NAMES[model.architecture.family]}`, where);
  }

  const map = loraKeyMap(model);
  const entries: LoraMatchEntry[] = [];
  const unmatched: string[] = [];
  let unet = 0;
  let text = 0;
  for (const module of lora.modules.values()) {
    const key = module.key.startsWith('base_model.model.') ? module.key.slice('base_model.model.'.length) : module.key;
    const target = map.get(key);
    if (target === undefined) {
      unmatched.push(module.key);
      continue;
    }
    const weights = target.component === 'unet' ? model.unet : model.textEncoder;
    const shape = weights.shape(target.name);
    const rows = target.rows?.count ?? shape[0]!;
    const cols = count(shape.slice(1));
    const [out, ...rest] = module.deltaShape;
    // A k×k delta must land on a k×k convolution; 1×1 and Linear are the same matrix (kohya reshapes freely).
    const kernel = module.deltaShape.slice(2);
    const kernelFits = kernel.every((d) => d === 1) || (shape.length === module.deltaShape.length && kernel.every((d, i) => d === shape[2 + i]));
    const fits = out === rows && count(rest) === cols && kernelFits;
    if (!fits) {
      const wanted = target.rows ? `rows ${target.rows.start}–${target.rows.start + target.rows.count - 1} of ${fmt(shape)}` : fmt(shape);
      throw new CheckpointError(`${where}: LoRA module ${module.key} makes a ${fmt(module.deltaShape)} change to ${target.name}, which is ${wanted} in this model: the LoRA does not fit this model${hint}`, where);
    }
    entries.push({ module, target });
    if (target.component === 'unet') unet++;
    else text++;
  }
  if (entries.length === 0) {
    throw new CheckpointError(
      `${where}: none of the LoRA's ${lora.modules.size} modules matches a weight of this ${FAMILY_NAMES[model.architecture.family]} model (first: ${unmatched.slice(0, 3).join(', ')})${hint}`,
      where,
    );
  }
  const allUnmatched = [...unmatched, ...lora.unknownKeys.first];
  return {
    lora,
    entries,
    unmatched: { count: unmatched.length + lora.unknownKeys.count, first: allUnmatched.slice(0, UNMATCHED_LISTED) },
    unetModules: unet,
    textEncoderModules: text,
  };
}
