/** The text `fusegraph inspect FILE` prints for a CheckpointDescription. */
import type { TextEncoderArchitecture, UnetArchitecture, VaeArchitecture } from './architecture.js';
import type { CheckpointDescription } from './describe.js';
import { formatBytes } from '../engine/format-bytes.js';

const LAYOUT_TEXT: Readonly<Record<CheckpointDescription['layout'], string>> = {
  ldm: 'LDM (model.diffusion_model.*, first_stage_model.*, cond_stage_model.*)',
  diffusers: 'diffusers single file (unet.*, vae.*, text_encoder.*)',
  vae: 'standalone VAE',
  unknown: 'not a Stable Diffusion layout',
};

const FAMILY_TEXT: Readonly<Record<string, string>> = {
  sd1: 'SD-1.x',
  sd2: 'SD-2.x (epsilon)',
  'sd2-v': 'SD-2.x v-prediction',
};

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

function unetLine(u: UnetArchitecture): string {
  const heads = u.numHeads !== null ? `${u.numHeads} heads` : `${u.headChannels}-wide heads`;
  return (
    `${u.inChannels}→${u.outChannels} channels, model_channels ${u.modelChannels}, channel_mult [${u.channelMult.join(', ')}], ` +
    `${plural(u.numResBlocks, 'res block')} per level, attention at levels [${u.attentionLevels.map((a, i) => (a ? i : null)).filter((i) => i !== null).join(', ')}], ` +
    `transformer depth ${u.transformerDepth}, ${heads}, context ${u.contextDim}, ${u.linearProjection ? 'linear' : 'conv'} proj_in/out`
  );
}

function textLine(t: TextEncoderArchitecture): string {
  return `${t.kind === 'clip' ? 'CLIP' : 'OpenCLIP'} width ${t.width}, ${plural(t.layers, 'layer')}, ${plural(t.heads, 'head')}, vocab ${t.vocabSize}, ${t.maxPositions} positions, ${t.activation}`;
}

function vaeLine(v: VaeArchitecture): string {
  return `ch ${v.ch}, ch_mult [${v.chMult.join(', ')}], ${plural(v.numResBlocks, 'res block')}, ${v.zChannels} latent channels, ${v.outChannels} image channels, scale ${v.scalingFactor}, ${v.hasEncoder ? 'encoder and decoder' : 'decoder only'}`;
}

export function formatInspectReport(d: CheckpointDescription): string {
  const lines: string[] = [];
  const row = (k: string, v: string): void => void lines.push(`${`${k}:`.padEnd(16)}${v}`);
  row('file', d.file);
  row('format', d.format);
  row('size', `${formatBytes(d.bytes)} (${d.bytes} bytes)`);
  row('tensors', String(d.tensorCount));
  const dtypes = Object.entries(d.dtypes).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  row('dtypes', dtypes.map(([t, n]) => `${t} ×${n}`).join(', ') || 'none');
  row('key layout', LAYOUT_TEXT[d.layout]);
  row('family', d.family ? (FAMILY_TEXT[d.family] ?? d.family) : d.layout === 'vae' ? 'VAE (use it as LoadModel’s vae)' : 'unsupported');
  if (d.unsupported) row('unsupported', d.unsupported);
  if (d.layout !== 'vae') row('EMA weights', d.hasEma ? 'present (model_ema.*, complete)' : 'absent');
  const a = d.architecture;
  if (a) {
    row('UNet', unetLine(a.unet));
    row('text encoder', textLine(a.textEncoder));
    row('VAE', vaeLine(a.vae));
  } else if (d.standaloneVae) {
    row('VAE', vaeLine(d.standaloneVae));
  }
  if (d.layout !== 'vae') row('prediction', `${d.prediction.value} (${d.prediction.reason})`);
  if (d.unknownKeys.count === 0) row('unknown keys', 'none');
  else {
    const shown = d.unknownKeys.first.slice(0, 5);
    row('unknown keys', `${d.unknownKeys.count}: ${shown.join(', ')}${d.unknownKeys.count > shown.length ? ', …' : ''}`);
  }
  return lines.join('\n');
}
