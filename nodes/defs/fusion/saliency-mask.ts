import { defineNode } from '../../define.js';

export const SaliencyMask = defineNode({
  type: 'SaliencyMask',
  title: 'Saliency Mask',
  category: 'fusion',
  description:
    "MagicFusion saliency: softmax over H·W of k·mean_c(Blur(|s·(ε_c − ε_u)|)), with MagicFusion's blur (4×4 box, " +
    'pad 1, then bilinear resize back). Wire uncond_from to take ε_u from another PredictNoise, as the original code ' +
    "does for the expert (its cond minus the base model's uncond).",
  inputs: {
    noise: { type: 'NOISE', description: 'Output of a PredictNoise node.' },
    uncond_from: { type: 'NOISE', optional: true, description: 'Optional PredictNoise whose unconditional prediction replaces this one’s.' },
  },
  outputs: { saliency: { type: 'SALIENCY', description: 'Per-sample spatial probability map [B, 1, H, W].' } },
  params: { k: { kind: 'float', default: 1, min: 0, max: 1000, step: 0.1, description: 'Softmax temperature factor (kg or ke).' } },
  output: false,
});
