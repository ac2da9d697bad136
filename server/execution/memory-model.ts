import type { UnetActivation } from '../sd/activation-store.js';
import type { ModelFolder } from '../sd/model-folder.js';

/**
 * A deliberately simple model of a run's peak memory (see docs/api.md, "Admission control"). It is an upper-bound
 * style estimate for refusing requests that cannot fit, not a prediction: CFG doubles the UNet batch and two models'
 * UNet calls may overlap. A UNet's activations come from measuring it (activation-profiler.ts) once that is done,
 * before that from its config with the hand constants below, float32 throughout.
 */
export interface ModelMemoryFacts {
  /** Channels of the UNet's full-resolution level (block_out_channels[0]). */
  readonly unetWidth: number;
  /** Heads of a self-attention at full latent resolution (SD's first CrossAttnDownBlock2D), 0 when there is none. */
  readonly selfAttentionHeads: number;
  /** Channels of the VAE decoder's full-resolution level. */
  readonly vaeWidth: number;
  /** The UNet's measured per-row factors, which replace the config-based terms; null until measured. */
  readonly measuredUnet: UnetActivation | null;
}

/** Full-resolution feature maps alive at once inside one UNet call (skip connections, norms, temporaries). */
export const UNET_LIVE_MAPS = 12;
/** Full-resolution feature maps alive at once inside one VAE decode. */
export const VAE_LIVE_MAPS = 6;

const firstNumber = (v: unknown): number | null => {
  const x = Array.isArray(v) ? v[0] : v;
  return typeof x === 'number' && Number.isFinite(x) && x > 0 ? x : null;
};

export function memoryFacts(folder: Pick<ModelFolder, 'unetConfig' | 'vaeConfig'>, measuredUnet: UnetActivation | null = null): ModelMemoryFacts {
  const unet = folder.unetConfig;
  const firstBlock = Array.isArray(unet?.down_block_types) ? unet.down_block_types[0] : undefined;
  const attends = typeof firstBlock === 'string' && firstBlock.includes('Attn');
  return {
    // Without a config, SD 1.x's values: a folder that omits it is most likely an SD export.
    unetWidth: firstNumber(unet?.block_out_channels) ?? 320,
    selfAttentionHeads: attends ? firstNumber(unet?.attention_head_dim) ?? 8 : unet ? 0 : 8,
    vaeWidth: firstNumber(folder.vaeConfig?.block_out_channels) ?? 128,
    measuredUnet,
  };
}

/** Bytes one UNet call on `rows` latent rows of `pixels` latent pixels each may hold at its peak. */
export function unetCallBytes(f: ModelMemoryFacts, rows: number, pixels: number): number {
  const m = f.measuredUnet;
  if (m) return rows * (m.perPixel * pixels + m.perPixelSquared * pixels * pixels);
  return 4 * rows * (UNET_LIVE_MAPS * f.unetWidth * pixels + f.selfAttentionHeads * pixels * pixels);
}

/** Bytes one VAE decode of `batch` images of `pixels` image pixels each may hold at its peak. */
export function decodeBytes(f: ModelMemoryFacts, batch: number, pixels: number): number {
  return 4 * batch * VAE_LIVE_MAPS * f.vaeWidth * pixels;
}

