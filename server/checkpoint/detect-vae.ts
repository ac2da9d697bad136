/**
 * The VAE (LDM AutoencoderKL, as SD-1/2 use it: attention in the mid blocks only) from its canonical LDM-named
 * tensors, and the full list of tensors that architecture has.
 */
import type { VaeArchitecture } from './architecture.js';
import { checkSpecs, countIndexed, type KeySpec, type KeyTable } from './key-layouts.js';
import type { Detection } from './detect-unet.js';

/** SD-1.x/2.x latent scale (LDM configs' `scale_factor`, diffusers' LDM_VAE_DEFAULT_SCALING_FACTOR). */
export const SD_VAE_SCALING_FACTOR = 0.18215;

export function detectVaeShape(t: KeyTable): { value: VaeArchitecture } | { problem: string } {
  const convOut = t.get('decoder.conv_out.weight')?.shape;
  if (!convOut || convOut.length !== 4) return { problem: 'no decoder.conv_out.weight' };
  const [outChannels, ch] = convOut as [number, number];
  const levels = countIndexed(t.keys(), 'decoder.up.');
  if (levels === 0) return { problem: 'no decoder.up.0 blocks' };
  const chMult: number[] = [];
  for (let l = 0; l < levels; l++) {
    const c = t.get(`decoder.up.${l}.block.0.conv2.weight`)?.shape[0];
    if (c === undefined) return { problem: `no decoder.up.${l}.block.0.conv2.weight` };
    if (!Number.isInteger(c / ch)) return { problem: `decoder.up.${l} has ${c} channels, not a multiple of ${ch}` };
    chMult.push(c / ch);
  }
  const hasEncoder = [...t.keys()].some((k) => k.startsWith('encoder.') || k.startsWith('quant_conv.'));
  const decoderRes = countIndexed(t.keys(), 'decoder.up.0.block.') - 1;
  const numResBlocks = hasEncoder ? countIndexed(t.keys(), 'encoder.down.0.block.') : decoderRes;
  if (numResBlocks < 1) return { problem: 'no ResBlocks in encoder.down.0 / decoder.up.0' };
  const pq = t.get('post_quant_conv.weight')?.shape;
  if (!pq || pq.length !== 4) return { problem: 'no post_quant_conv.weight' };
  return { value: { ch, chMult, numResBlocks, zChannels: pq[0]!, outChannels, scalingFactor: SD_VAE_SCALING_FACTOR, hasEncoder } };
}

export function vaeKeySpecs(a: VaeArchitecture): KeySpec[] {
  const specs: KeySpec[] = [];
  const conv = (p: string, o: number, i: number, k: number): void => {
    specs.push({ name: `${p}.weight`, shape: [o, i, k, k] });
    specs.push({ name: `${p}.bias`, shape: [o] });
  };
  const norm = (p: string, c: number): void => {
    specs.push({ name: `${p}.weight`, shape: [c] });
    specs.push({ name: `${p}.bias`, shape: [c] });
  };
  const resnet = (p: string, cin: number, cout: number): void => {
    norm(`${p}norm1`, cin);
    conv(`${p}conv1`, cout, cin, 3);
    norm(`${p}norm2`, cout);
    conv(`${p}conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${p}nin_shortcut`, cout, cin, 1);
  };
  const mid = (p: string, c: number): void => {
    resnet(`${p}mid.block_1.`, c, c);
    norm(`${p}mid.attn_1.norm`, c);
    for (const q of ['q', 'k', 'v', 'proj_out']) {
      specs.push({ name: `${p}mid.attn_1.${q}.weight`, shape: [c, c, 1, 1], convOrLinear: true });
      specs.push({ name: `${p}mid.attn_1.${q}.bias`, shape: [c] });
    }
    resnet(`${p}mid.block_2.`, c, c);
  };
  const L = a.chMult.length;
  const c = (l: number): number => a.ch * a.chMult[l]!;
  const z = a.zChannels;
  if (a.hasEncoder) {
    conv('encoder.conv_in', a.ch, a.outChannels, 3);
    let cin = a.ch;
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < a.numResBlocks; j++) {
        resnet(`encoder.down.${l}.block.${j}.`, cin, c(l));
        cin = c(l);
      }
      if (l !== L - 1) conv(`encoder.down.${l}.downsample.conv`, cin, cin, 3);
    }
    mid('encoder.', cin);
    norm('encoder.norm_out', cin);
    conv('encoder.conv_out', 2 * z, cin, 3);
    conv('quant_conv', 2 * z, 2 * z, 1);
  }
  conv('post_quant_conv', z, z, 1);
  conv('decoder.conv_in', c(L - 1), z, 3);
  mid('decoder.', c(L - 1));
  let cin = c(L - 1);
  for (let l = L - 1; l >= 0; l--) {
    for (let j = 0; j <= a.numResBlocks; j++) {
      resnet(`decoder.up.${l}.block.${j}.`, cin, c(l));
      cin = c(l);
    }
    if (l !== 0) conv(`decoder.up.${l}.upsample.conv`, cin, cin, 3);
  }
  norm('decoder.norm_out', a.ch);
  conv('decoder.conv_out', a.outChannels, a.ch, 3);
  return specs;
}

export function detectVae(t: KeyTable): Detection<VaeArchitecture> {
  const d = detectVaeShape(t);
  if ('problem' in d) return { ok: false, problem: d.problem };
  return { ok: true, value: d.value, check: checkSpecs(t, vaeKeySpecs(d.value)) };
}
