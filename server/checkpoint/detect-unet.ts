/**
 * The UNet's architecture from its tensor shapes (the idea of ComfyUI's comfy/model_detection.py
 * `detect_unet_config`), then the full list of tensors that architecture has (LDM openaimodel.UNetModel as SD-1/2 use
 * it, legacy=False), checked against the file so an inconsistent file is refused naming what is missing.
 */
import { checkSpecs, countIndexed, fmtShape, type KeySpec, type KeyTable, type SpecCheck } from './key-layouts.js';

/** UnetArchitecture without the head split, which depends on the text encoder (family). */
export interface UnetShape {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly modelChannels: number;
  readonly channelMult: readonly number[];
  readonly numResBlocks: number;
  readonly attentionLevels: readonly boolean[];
  readonly transformerDepth: number;
  readonly contextDim: number;
  readonly linearProjection: boolean;
}

export type Detection<T> = { readonly ok: true; readonly value: T; readonly check: SpecCheck } | { readonly ok: false; readonly problem: string };

const shapeOf = (t: KeyTable, name: string): readonly number[] | undefined => t.get(name)?.shape;

/** Reads the architecture off the shapes; `problem` says what is missing or contradictory. */
export function detectUnetShape(t: KeyTable): { value: UnetShape } | { problem: string } {
  const convIn = shapeOf(t, 'input_blocks.0.0.weight');
  if (!convIn || convIn.length !== 4) return { problem: `no conv_in weight (input_blocks.0.0.weight${convIn ? ` is ${fmtShape(convIn)}` : ''})` };
  const [modelChannels, inChannels] = convIn as [number, number];
  const convOut = shapeOf(t, 'out.2.weight');
  if (!convOut || convOut.length !== 4) return { problem: 'no output conv weight (out.2.weight)' };
  const outChannels = convOut[0]!;

  const channelMult: number[] = [];
  const attentionLevels: boolean[] = [];
  const resPerLevel: number[] = [];
  let res = 0;
  let mult: number | null = null;
  let attn: boolean | null = null;
  const endLevel = (): string | null => {
    if (mult === null || attn === null) return `level ${channelMult.length} has no ResBlock`;
    channelMult.push(mult);
    attentionLevels.push(attn);
    resPerLevel.push(res);
    res = 0;
    mult = null;
    attn = null;
    return null;
  };
  for (let n = 1; ; n++) {
    if (t.has(`input_blocks.${n}.0.op.weight`)) {
      const p = endLevel();
      if (p) return { problem: p };
      continue;
    }
    if (!t.has(`input_blocks.${n}.0.in_layers.0.weight`)) break;
    const out = shapeOf(t, `input_blocks.${n}.0.out_layers.3.weight`);
    if (!out) return { problem: `input_blocks.${n}.0 has no out_layers.3.weight` };
    const m = out[0]! / modelChannels;
    if (!Number.isInteger(m)) return { problem: `input_blocks.${n}.0 has ${out[0]} channels, not a multiple of model_channels ${modelChannels}` };
    const a = t.has(`input_blocks.${n}.1.proj_in.weight`);
    if (mult !== null && mult !== m) return { problem: `input_blocks.${n}: ResBlocks of one level have ${mult * modelChannels} and ${out[0]} channels` };
    if (attn !== null && attn !== a) return { problem: `input_blocks.${n}: only some ResBlocks of its level are followed by attention` };
    mult = m;
    attn = a;
    res++;
  }
  const p = endLevel();
  if (p) return { problem: p };
  const numResBlocks = resPerLevel[0]!;
  if (resPerLevel.some((r) => r !== numResBlocks)) return { problem: `levels have different numbers of ResBlocks (${resPerLevel.join(', ')})` };

  // Transformer depth, context width and projection kind: the same in every SpatialTransformer (SD-1/2).
  const transformers = [...t.keys()].filter((k) => k.endsWith('.proj_in.weight')).map((k) => k.slice(0, -'proj_in.weight'.length));
  if (transformers.length === 0) return { problem: 'no SpatialTransformer (…proj_in.weight) anywhere' };
  const first = transformers.find((p) => p.startsWith('input_blocks.')) ?? transformers[0]!;
  const transformerDepth = countIndexed(t.keys(), `${first}transformer_blocks.`);
  const toK = shapeOf(t, `${first}transformer_blocks.0.attn2.to_k.weight`);
  if (transformerDepth === 0 || !toK || toK.length !== 2) return { problem: `${first.slice(0, -1)} has no transformer_blocks.0.attn2.to_k.weight` };
  for (const p of transformers) {
    const d = countIndexed(t.keys(), `${p}transformer_blocks.`);
    if (d !== transformerDepth) return { problem: `transformer depth differs: ${first}… has ${transformerDepth} blocks, ${p}… has ${d}` };
  }
  const contextDim = toK[1]!;
  const linearProjection = shapeOf(t, `${first}proj_in.weight`)!.length === 2;
  return {
    value: { inChannels, outChannels, modelChannels, channelMult, numResBlocks, attentionLevels, transformerDepth, contextDim, linearProjection },
  };
}

/** Every tensor of an LDM UNetModel of this architecture, with its shape. */
export function unetKeySpecs(a: UnetShape): KeySpec[] {
  const specs: KeySpec[] = [];
  const add = (name: string, shape: readonly number[]): void => void specs.push({ name, shape });
  const C = a.modelChannels;
  const temb = 4 * C;
  const linear = (p: string, o: number, i: number, bias = true): void => {
    add(`${p}.weight`, [o, i]);
    if (bias) add(`${p}.bias`, [o]);
  };
  const conv = (p: string, o: number, i: number, k: number): void => {
    add(`${p}.weight`, [o, i, k, k]);
    add(`${p}.bias`, [o]);
  };
  const norm = (p: string, c: number): void => {
    add(`${p}.weight`, [c]);
    add(`${p}.bias`, [c]);
  };
  const resBlock = (p: string, cin: number, cout: number): void => {
    norm(`${p}in_layers.0`, cin);
    conv(`${p}in_layers.2`, cout, cin, 3);
    linear(`${p}emb_layers.1`, cout, temb);
    norm(`${p}out_layers.0`, cout);
    conv(`${p}out_layers.3`, cout, cout, 3);
    if (cin !== cout) conv(`${p}skip_connection`, cout, cin, 1);
  };
  const proj = (p: string, c: number): void => {
    if (a.linearProjection) linear(p, c, c);
    else conv(p, c, c, 1);
  };
  const transformer = (p: string, c: number): void => {
    norm(`${p}norm`, c);
    proj(`${p}proj_in`, c);
    for (let k = 0; k < a.transformerDepth; k++) {
      const b = `${p}transformer_blocks.${k}.`;
      for (const q of ['to_q', 'to_k', 'to_v']) linear(`${b}attn1.${q}`, c, c, false);
      linear(`${b}attn1.to_out.0`, c, c);
      linear(`${b}attn2.to_q`, c, c, false);
      linear(`${b}attn2.to_k`, c, a.contextDim, false);
      linear(`${b}attn2.to_v`, c, a.contextDim, false);
      linear(`${b}attn2.to_out.0`, c, c);
      linear(`${b}ff.net.0.proj`, 8 * c, c);
      linear(`${b}ff.net.2`, c, 4 * c);
      for (const n of ['norm1', 'norm2', 'norm3']) norm(`${b}${n}`, c);
    }
    proj(`${p}proj_out`, c);
  };

  linear('time_embed.0', temb, C);
  linear('time_embed.2', temb, temb);
  conv('input_blocks.0.0', C, a.inChannels, 3);
  const L = a.channelMult.length;
  const skips = [C];
  let ch = C;
  let n = 1;
  for (let l = 0; l < L; l++) {
    for (let j = 0; j < a.numResBlocks; j++) {
      const cout = a.channelMult[l]! * C;
      resBlock(`input_blocks.${n}.0.`, ch, cout);
      ch = cout;
      if (a.attentionLevels[l]) transformer(`input_blocks.${n}.1.`, ch);
      skips.push(ch);
      n++;
    }
    if (l !== L - 1) {
      conv(`input_blocks.${n}.0.op`, ch, ch, 3);
      skips.push(ch);
      n++;
    }
  }
  resBlock('middle_block.0.', ch, ch);
  transformer('middle_block.1.', ch);
  resBlock('middle_block.2.', ch, ch);
  n = 0;
  for (let l = L - 1; l >= 0; l--) {
    for (let j = 0; j <= a.numResBlocks; j++) {
      const cout = a.channelMult[l]! * C;
      resBlock(`output_blocks.${n}.0.`, ch + skips.pop()!, cout);
      ch = cout;
      let idx = 1;
      if (a.attentionLevels[l]) transformer(`output_blocks.${n}.${idx++}.`, ch);
      if (l !== 0 && j === a.numResBlocks) conv(`output_blocks.${n}.${idx}.conv`, ch, ch, 3);
      n++;
    }
  }
  norm('out.0', C);
  conv('out.2', a.outChannels, C, 3);
  return specs;
}

export function detectUnet(t: KeyTable): Detection<UnetShape> {
  const d = detectUnetShape(t);
  if ('problem' in d) return { ok: false, problem: d.problem };
  return { ok: true, value: d.value, check: checkSpecs(t, unetKeySpecs(d.value)) };
}
