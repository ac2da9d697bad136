/**
 * What a Stable Diffusion checkpoint file IS, read from its tensors (never its file name): key layout, family,
 * architecture of each part, EMA, prediction type, and what is not supported (with why). `componentWeights` gives
 * each part's tensors under canonical LDM names for the graph builders, whatever layout the file used.
 *
 * Layouts understood:
 *  - LDM whole-model files: `model.diffusion_model.*` (UNet), `model_ema.*` (its EMA copy, dots dropped),
 *    `first_stage_model.*` (VAE), `cond_stage_model.transformer.*` (CLIP, SD-1; very old files lack `text_model.`)
 *    or `cond_stage_model.model.*` (OpenCLIP, SD-2);
 *  - diffusers single files: `unet.*` / `vae.*` / `text_encoder.*` in diffusers names (SD-1 only: an SD-2 text
 *    encoder in HF naming has q/k/v split where the builders expect OpenCLIP's fused in_proj);
 *  - standalone VAEs (bare, `first_stage_model.`- or `vae.`-prefixed, LDM or diffusers AutoencoderKL names).
 */
import type { ModelArchitecture, ModelFamily, Prediction, TextEncoderArchitecture, UnetArchitecture, VaeArchitecture } from './architecture.js';
import { detectTextEncoder, type TextEncoderShape } from './detect-text-encoder.js';
import { detectUnet, type Detection, type UnetShape } from './detect-unet.js';
import { detectVae } from './detect-vae.js';
import {
  clipCanonicalName,
  diffusersUnetRenamer,
  diffusersVaeRenamer,
  DIFFUSERS_TEXT_ENCODER_PREFIX,
  DIFFUSERS_UNET_PREFIX,
  DIFFUSERS_VAE_PREFIX,
  emaKeyFor,
  fmtShape,
  hasPrefix,
  isDiffusersVaeNaming,
  isKnownExtraKey,
  keyTable,
  KNOWN_PREFIXES,
  LDM_CLIP_PREFIX,
  LDM_EMA_PREFIX,
  LDM_OPEN_CLIP_PREFIX,
  LDM_UNET_PREFIX,
  LDM_VAE_PREFIX,
  listProblems,
  sameShape,
  tableWeights,
  type KeyTable,
  type SpecCheck,
} from './key-layouts.js';
import { decidePrediction } from './prediction.js';
import { CheckpointError, type TensorFile } from './tensor-file.js';
import type { Weights } from './weights.js';

export type CheckpointLayout = 'ldm' | 'diffusers' | 'vae' | 'unknown';

export interface CheckpointDescription {
  readonly file: string;
  readonly format: 'safetensors' | 'torch';
  readonly bytes: number;
  readonly tensorCount: number;
  /** Stored dtype → number of tensors. */
  readonly dtypes: Readonly<Record<string, number>>;
  /** Whole-model LDM keys, diffusers single-file keys, a standalone VAE, or none of these (not an SD file). */
  readonly layout: CheckpointLayout;
  /** sd1 | sd2 | sd2-v (sd2 whose decided prediction is v); null when unsupported. */
  readonly family: ModelFamily | null;
  /** null when unsupported. */
  readonly architecture: ModelArchitecture | null;
  /** Why the file cannot be used as a model ("not supported yet: SDXL base checkpoint", …), or null. */
  readonly unsupported: string | null;
  /** Every `model.diffusion_model.*` tensor has its `model_ema.*` twin of the same shape. */
  readonly hasEma: boolean;
  /** The `prediction: auto` decision and why (see prediction.ts for the rule). */
  readonly prediction: { readonly value: Prediction; readonly reason: string };
  /** Keys outside everything this reader understands (known non-weight buffers excluded): count and first 10. */
  readonly unknownKeys: { readonly count: number; readonly first: readonly string[] };
  /** The VAE's architecture when `layout` is 'vae' (the file is a VAE to pass as LoadModel's vae), else null. */
  readonly standaloneVae: VaeArchitecture | null;
}

type Part = 'unet' | 'vae' | 'textEncoder';

interface Component<T> {
  /** Prefix of the stored keys ('' for a bare VAE). */
  readonly prefix: string;
  readonly table: KeyTable;
  readonly detection: Detection<T>;
  /** How to name a canonical key in a message. */
  readonly storedName: (canonical: string) => string;
}

interface Analysis {
  readonly layout: CheckpointLayout;
  readonly unsupported: string | null;
  readonly architecture: Omit<ModelArchitecture, 'family'> & { readonly family: 'sd1' | 'sd2' } | null;
  readonly unet: Component<UnetShape> | null;
  readonly vae: Component<VaeArchitecture> | null;
  readonly textEncoder: (Component<TextEncoderShape> & { readonly kind: 'clip' | 'open-clip' }) | null;
  readonly ema: { readonly complete: boolean; readonly twins: number; readonly total: number; readonly firstMissing: string | null };
  readonly unknownKeys: { readonly count: number; readonly first: readonly string[] };
  /** Stored and canonical name of the SD-2 v-prediction probe, when the rule applies. */
  readonly sd2Probe: { readonly canonical: string; readonly stored: string } | null;
}

const UNKNOWN_KEYS_LISTED = 10;

function component<T>(file: TensorFile, prefix: string, rename: ((rest: string) => string | null) | undefined, detect: (t: KeyTable) => Detection<T>, diffusers: boolean): Component<T> {
  const table = keyTable(file, prefix, rename);
  return {
    prefix,
    table,
    detection: detect(table),
    storedName: (c) => (diffusers ? `${c} (LDM name; ${prefix}… in the file)` : `${prefix}${c}`),
  };
}

function restNames(file: TensorFile, prefix: string): string[] {
  const out: string[] = [];
  for (const k of file.tensors.keys()) if (k.startsWith(prefix)) out.push(k.slice(prefix.length));
  return out;
}

const VAE_ROOTS = /^(encoder|decoder|quant_conv|post_quant_conv)\./;

/** The VAE under `prefix`, in LDM or diffusers names; null when nothing there looks like a VAE. */
function vaeComponent(file: TensorFile, prefix: string): Component<VaeArchitecture> | null {
  const names = restNames(file, prefix).filter((n) => VAE_ROOTS.test(n));
  if (names.length === 0) return null;
  const diffusers = isDiffusersVaeNaming(names);
  const rename = diffusers ? diffusersVaeRenamer(names) : (r: string) => (VAE_ROOTS.test(r) ? r : null);
  return component(file, prefix, rename, detectVae, diffusers);
}

function unetComponent(file: TensorFile): { c: Component<UnetShape>; layout: 'ldm' | 'diffusers' } | null {
  if (hasPrefix(file, LDM_UNET_PREFIX)) return { c: component(file, LDM_UNET_PREFIX, undefined, detectUnet, false), layout: 'ldm' };
  if (hasPrefix(file, `${DIFFUSERS_UNET_PREFIX}down_blocks.`) || hasPrefix(file, `${DIFFUSERS_UNET_PREFIX}conv_in.`)) {
    const rename = diffusersUnetRenamer(restNames(file, DIFFUSERS_UNET_PREFIX));
    return { c: component(file, DIFFUSERS_UNET_PREFIX, rename, detectUnet, true), layout: 'diffusers' };
  }
  return null;
}

function textEncoderComponent(file: TensorFile): Analysis['textEncoder'] {
  const withKind = <T>(c: Component<T>, kind: 'clip' | 'open-clip') => ({ ...c, kind });
  if (hasPrefix(file, LDM_CLIP_PREFIX)) return withKind(component(file, LDM_CLIP_PREFIX, clipCanonicalName, (t) => detectTextEncoder(t, 'clip'), false), 'clip');
  if (hasPrefix(file, LDM_OPEN_CLIP_PREFIX)) return withKind(component(file, LDM_OPEN_CLIP_PREFIX, undefined, (t) => detectTextEncoder(t, 'open-clip'), false), 'open-clip');
  if (hasPrefix(file, `${DIFFUSERS_TEXT_ENCODER_PREFIX}text_model.`)) {
    return withKind(component(file, DIFFUSERS_TEXT_ENCODER_PREFIX, undefined, (t) => detectTextEncoder(t, 'clip'), false), 'clip');
  }
  return null;
}

function firstKeys(file: TensorFile, n = 3): string {
  return [...file.tensors.keys()].slice(0, n).join(', ') || 'none';
}

function looksLikeLora(file: TensorFile): boolean {
  for (const k of file.tensors.keys()) if (/(^|[._])lora(_unet|_te\d?)?[._]|\.lora_(up|down|A|B)\.|\.hada_w\d|\.lokr_w\d/.test(k)) return true;
  return false;
}

/** Problems of a detected component as one sentence, or null when it is complete and consistent. */
function componentProblem<T>(what: string, c: Component<T>): string | null {
  if (!c.detection.ok) return `inconsistent ${what}: ${c.detection.problem}`;
  const p = listProblems(c.detection.check, c.storedName);
  return p === null ? null : `inconsistent ${what}: ${p}`;
}

/** The public TextEncoderArchitecture (without the MLP width the builders read from the weights). */
function textArchitecture(te: TextEncoderShape): TextEncoderArchitecture {
  const { kind, width, layers, heads, vocabSize, maxPositions, activation } = te;
  return { kind, width, layers, heads, vocabSize, maxPositions, activation };
}

function unetSummary(u: UnetShape): string {
  return `model_channels ${u.modelChannels}, channel_mult [${u.channelMult.join(',')}], ${u.numResBlocks} res blocks, attention [${u.attentionLevels.map((a) => (a ? 1 : 0)).join(',')}], depth ${u.transformerDepth}, context ${u.contextDim}`;
}

function analyse(file: TensorFile): Analysis {
  let layout: CheckpointLayout = 'unknown';
  let unsupported: string | null = null;
  let architecture: Analysis['architecture'] = null;
  const u = unetComponent(file);
  const unet = u?.c ?? null;
  if (u) layout = u.layout;
  const textEncoder = textEncoderComponent(file);
  let vae = vaeComponent(file, LDM_VAE_PREFIX) ?? vaeComponent(file, DIFFUSERS_VAE_PREFIX);
  const refuse = (why: string): void => {
    if (unsupported === null) unsupported = why;
  };

  if (hasPrefix(file, 'conditioner.embedders.1.')) refuse('not supported yet: SDXL base checkpoint (conditioner.embedders.1.*: a second text encoder)');
  else if (hasPrefix(file, 'conditioner.embedders.0.model.')) refuse('not supported yet: SDXL refiner checkpoint (conditioner.embedders.0.model.*: OpenCLIP ViT-bigG alone)');
  else if (hasPrefix(file, 'conditioner.')) refuse('not supported yet: an SGM (SDXL-style, conditioner.*) checkpoint');

  if (!unet) {
    const bareVae = vae ?? vaeComponent(file, '');
    if (bareVae && !textEncoder && bareVae.table.has('decoder.conv_out.weight')) {
      layout = 'vae';
      vae = bareVae;
      refuse("this is a VAE, not a model: use it as LoadModel's vae");
    } else if (hasPrefix(file, 'input_blocks.0.0.') && hasPrefix(file, 'time_embed.')) {
      layout = 'ldm';
      refuse('not supported yet: a bare UNet file (LDM names, no text encoder or VAE)');
    } else if (hasPrefix(file, 'down_blocks.') && hasPrefix(file, 'time_embedding.')) {
      layout = 'diffusers';
      refuse('not supported yet: a bare diffusers UNet file (no text encoder or VAE)');
    } else if (looksLikeLora(file)) {
      refuse(`not a Stable Diffusion checkpoint: this looks like a LoRA (${firstKeys(file, 2)}, …)`);
    } else if (textEncoder || vae) {
      const parts = [textEncoder ? 'a text encoder' : null, vae ? 'a VAE' : null].filter((x) => x !== null).join(' and ');
      refuse(`not a Stable Diffusion checkpoint: no UNet weights (model.diffusion_model.*), only ${parts}`);
    } else {
      refuse(`not a Stable Diffusion checkpoint: no UNet weights (model.diffusion_model.*) among its ${file.tensors.size} tensors (first: ${firstKeys(file)})`);
    }
  }

  let sd2Probe: Analysis['sd2Probe'] = null;
  if (unet) {
    const t = unet.table;
    const adm = t.get('label_emb.0.0.weight')?.shape[1];
    if (adm !== undefined || t.has('label_emb.0.weight')) {
      if (adm === 2816) refuse('not supported yet: SDXL base checkpoint (label_emb, adm_in_channels 2816)');
      else if (adm === 2560) refuse('not supported yet: SDXL refiner checkpoint (label_emb, adm_in_channels 2560)');
      else if (hasPrefix(file, 'embedder.') || hasPrefix(file, 'noise_augmentor.')) refuse(`not supported yet: unCLIP checkpoint (label_emb, adm_in_channels ${adm ?? '?'})`);
      else refuse(`not supported yet: a class-conditioned (unCLIP-style) UNet (label_emb, adm_in_channels ${adm ?? '?'})`);
    }
    const inCh = t.get('input_blocks.0.0.weight')?.shape[1];
    if (hasPrefix(file, 'depth_model.') || inCh === 5) refuse(`not supported yet: depth-conditioned checkpoint (${inCh ?? '?'} UNet input channels${hasPrefix(file, 'depth_model.') ? ', depth_model.*' : ''})`);
    else if (inCh === 9) refuse('not supported yet: inpainting checkpoint (9 UNet input channels: latent, mask, masked image)');
    else if (inCh === 8) refuse('not supported yet: instruct-pix2pix checkpoint (8 UNet input channels)');
    else if (inCh === 7) refuse('not supported yet: x4 upscaler checkpoint (7 UNet input channels)');
    if (textEncoder?.kind === 'open-clip' && inCh === 4) {
      const canonical = [...t.keys()].reduce<string | null>((best, k) => {
        const m = /^output_blocks\.(\d+)\.1\.transformer_blocks\.0\.norm1\.bias$/.exec(k);
        if (!m) return best;
        const bm = best === null ? -1 : Number(/^output_blocks\.(\d+)/.exec(best)![1]);
        return Number(m[1]) > bm ? k : best;
      }, null);
      if (canonical !== null) sd2Probe = { canonical, stored: t.get(canonical)!.stored };
    }

    const up = componentProblem('UNet', unet);
    if (up) refuse(unet.detection.ok ? `${up} (the detected architecture: ${unetSummary(unet.detection.value)})` : up);
    if (!textEncoder) refuse('not supported yet: a checkpoint without a text encoder (no cond_stage_model.*)');
    else {
      const p = componentProblem(textEncoder.kind === 'clip' ? 'CLIP text encoder' : 'OpenCLIP text encoder', textEncoder);
      if (p) refuse(p);
    }
    if (!vae) refuse(`not supported yet: a checkpoint without a VAE (no ${LDM_VAE_PREFIX}*); bake one in, or load it with a VAE there`);
    else {
      const p = componentProblem('VAE', vae);
      if (p) refuse(p);
    }

    if (unsupported === null && unet.detection.ok && textEncoder?.detection.ok && vae?.detection.ok) {
      const us = unet.detection.value;
      const te = textEncoder.detection.value;
      const va = vae.detection.value;
      const sd2 = textEncoder.kind === 'open-clip';
      const attnChannels = us.channelMult.filter((_, l) => us.attentionLevels[l]).map((m) => m * us.modelChannels);
      attnChannels.push(us.channelMult[us.channelMult.length - 1]! * us.modelChannels); // the middle block
      if (us.inChannels !== 4 && us.inChannels !== va.zChannels) refuse(`not supported yet: a UNet with ${us.inChannels} input channels (the VAE has ${va.zChannels} latent channels)`);
      else if (us.inChannels !== va.zChannels || us.outChannels !== va.zChannels) {
        refuse(`inconsistent checkpoint: the UNet takes ${us.inChannels} and gives ${us.outChannels} channels but the VAE's latent has ${va.zChannels}`);
      } else if (us.contextDim !== te.width) {
        refuse(`inconsistent checkpoint: the UNet's cross-attention takes ${us.contextDim}-wide context but the text encoder is ${te.width} wide`);
      } else if (u?.layout === 'diffusers' && (sd2 || us.linearProjection)) {
        refuse('not supported yet: an SD-2 checkpoint in the diffusers single-file layout (convert it to the LDM layout)');
      } else if (!sd2 && attnChannels.some((c) => c % 8 !== 0)) {
        refuse(`inconsistent UNet: SD-1 attention uses 8 heads but a level has ${attnChannels.find((c) => c % 8 !== 0)} channels`);
      } else if (sd2 && attnChannels.some((c) => c % 64 !== 0)) {
        refuse(`inconsistent UNet: SD-2 attention uses 64-wide heads but a level has ${attnChannels.find((c) => c % 64 !== 0)} channels`);
      } else {
        const unetArch: UnetArchitecture = { ...us, numHeads: sd2 ? null : 8, headChannels: sd2 ? 64 : null };
        const textArch = textArchitecture(te);
        architecture = { family: sd2 ? 'sd2' : 'sd1', unet: unetArch, vae: va, textEncoder: textArch };
      }
    }
  }

  // EMA twins of the UNet (LDM layout only).
  let twins = 0;
  let total = 0;
  let firstMissing: string | null = null;
  const emaConsumed = new Set<string>();
  if (unet && u?.layout === 'ldm') {
    for (const [canonical, e] of unet.table) {
      total++;
      const ek = emaKeyFor(canonical);
      const et = file.tensors.get(ek);
      if (et && sameShape(et.shape, e.shape)) {
        twins++;
        emaConsumed.add(ek);
      } else if (firstMissing === null) firstMissing = `${ek} (for ${e.stored}${et ? `: ${fmtShape(et.shape)} instead of ${fmtShape(e.shape)}` : ''})`;
    }
  }
  const ema = { complete: total > 0 && twins === total, twins, total, firstMissing };

  // Unknown keys: used by no part, under no prefix of a part this reader knows, and not a known buffer.
  const consumed = new Set<string>(emaConsumed);
  const failedPrefixes: string[] = [];
  const matchedPrefixes: string[] = [];
  for (const c of [unet, textEncoder, vae]) {
    if (!c) continue;
    if (c.detection.ok) {
      for (const s of c.detection.check.names.values()) consumed.add(s);
      matchedPrefixes.push(c.prefix);
    } else failedPrefixes.push(c.prefix);
  }
  const unknown: string[] = [];
  for (const k of file.tensors.keys()) {
    if (consumed.has(k) || isKnownExtraKey(k)) continue;
    if (failedPrefixes.some((p) => p !== '' && k.startsWith(p))) continue;
    if (k.startsWith(LDM_EMA_PREFIX)) {
      if (total === 0) continue; // EMA weights with no UNet to twin: the UNet's absence is the message
      unknown.push(k);
      continue;
    }
    const partPrefix = matchedPrefixes.some((p) => k.startsWith(p));
    if (!partPrefix && KNOWN_PREFIXES.some((p) => k.startsWith(p)) && unsupported !== null) continue;
    unknown.push(k);
  }

  return {
    layout,
    unsupported,
    architecture: unsupported === null ? architecture : null,
    unet,
    vae,
    textEncoder,
    ema,
    unknownKeys: { count: unknown.length, first: unknown.slice(0, UNKNOWN_KEYS_LISTED) },
    sd2Probe,
  };
}

/**
 * Describes `file`. Content problems never throw: they land in `unsupported`. Async because the SD-2 prediction rule
 * reads one small tensor. `sidecarYaml` is the text of `<name>.yaml` beside the checkpoint when there is one.
 */
export async function describeCheckpoint(file: TensorFile, opts: { sidecarYaml?: string | null } = {}): Promise<CheckpointDescription> {
  const a = analyse(file);
  const dtypes: Record<string, number> = {};
  for (const t of file.tensors.values()) dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
  const isSd2 = a.textEncoder?.kind === 'open-clip';
  const prediction = await decidePrediction({ file, sidecarYaml: opts.sidecarYaml ?? null, sd2Probe: a.sd2Probe, isSd2 });
  let family: ModelFamily | null = null;
  let architecture: ModelArchitecture | null = null;
  if (a.architecture) {
    family = a.architecture.family === 'sd2' && prediction.value === 'v_prediction' ? 'sd2-v' : a.architecture.family;
    architecture = { ...a.architecture, family };
  }
  const standaloneVae = a.layout === 'vae' && a.vae?.detection.ok ? a.vae.detection.value : null;
  return {
    file: file.path,
    format: file.format,
    bytes: file.bytes,
    tensorCount: file.tensors.size,
    dtypes,
    layout: a.layout,
    family,
    architecture,
    unsupported: a.unsupported,
    hasEma: a.ema.complete,
    prediction,
    unknownKeys: a.unknownKeys,
    standaloneVae,
  };
}

function viewOf(file: TensorFile, check: SpecCheck): Weights {
  return tableWeights(file, check.names, check.shapes);
}

/**
 * One part's tensors under canonical LDM names. `ema` (UNet only; ignored for the others): the `model_ema.*` copy of
 * each UNet tensor instead; a CheckpointError when the file has no complete EMA copy.
 */
export function componentWeights(file: TensorFile, desc: CheckpointDescription, part: Part, opts: { ema: boolean }): Weights {
  if (!desc.architecture) throw new CheckpointError(`${file.path}: ${desc.unsupported ?? 'not a usable checkpoint'}`, file.path);
  const a = analyse(file);
  const c = part === 'unet' ? a.unet : part === 'vae' ? a.vae : a.textEncoder;
  if (!c || !c.detection.ok) throw new CheckpointError(`${file.path}: no usable ${part} (the file changed since it was described?)`, file.path);
  const check = c.detection.check;
  if (part !== 'unet' || !opts.ema) return viewOf(file, check);
  if (a.layout !== 'ldm') throw new CheckpointError(`${file.path}: EMA weights were asked for, but only LDM checkpoints (model_ema.*) carry them; this file is in the ${a.layout} layout`, file.path);
  if (!a.ema.complete) {
    const why =
      a.ema.twins === 0
        ? 'it has no EMA weights (model_ema.*)'
        : `its EMA weights are incomplete: ${a.ema.twins} of ${a.ema.total} UNet tensors have a model_ema.* copy, first missing ${a.ema.firstMissing}`;
    throw new CheckpointError(`${file.path}: EMA weights were asked for, but ${why}; use the non-EMA weights (ema: false)`, file.path);
  }
  const names = new Map<string, string>();
  for (const canonical of check.names.keys()) names.set(canonical, emaKeyFor(canonical));
  return tableWeights(file, names, check.shapes);
}

/**
 * A standalone VAE file (bare `encoder.*`/`decoder.*` keys as in the vae-ft-mse release, `first_stage_model.`- or
 * `vae.`-prefixed, LDM or diffusers AutoencoderKL names), or a whole checkpoint's VAE. Throws CheckpointError when the
 * file holds no VAE or an inconsistent one.
 */
export function describeVaeFile(file: TensorFile): { architecture: VaeArchitecture; weights: Weights } {
  const c = vaeComponent(file, LDM_VAE_PREFIX) ?? vaeComponent(file, DIFFUSERS_VAE_PREFIX) ?? vaeComponent(file, '');
  if (!c) throw new CheckpointError(`${file.path}: not a VAE: no encoder.* / decoder.* tensors (first keys: ${firstKeys(file)})`, file.path);
  const p = componentProblem('VAE', c);
  if (p || !c.detection.ok) throw new CheckpointError(`${file.path}: ${p}`, file.path);
  return { architecture: c.detection.value, weights: viewOf(file, c.detection.check) };
}

/**
 * A file's text encoder alone (e.g. the tiny-clip-multihead fixture, or a whole checkpoint's): canonical names as
 * componentWeights gives them. Throws CheckpointError when there is none or it is inconsistent.
 */
export function describeTextEncoderFile(file: TensorFile): { architecture: TextEncoderArchitecture; weights: Weights } {
  const c = textEncoderComponent(file);
  if (!c) throw new CheckpointError(`${file.path}: no text encoder (cond_stage_model.transformer.*, cond_stage_model.model.* or text_encoder.text_model.*)`, file.path);
  const p = componentProblem(c.kind === 'clip' ? 'CLIP text encoder' : 'OpenCLIP text encoder', c);
  if (p || !c.detection.ok) throw new CheckpointError(`${file.path}: ${p}`, file.path);
  return { architecture: textArchitecture(c.detection.value), weights: viewOf(file, c.detection.check) };
}
