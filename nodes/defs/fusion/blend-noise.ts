import { defineNode } from '../../define.js';

export const BlendNoise = defineNode({
  type: 'BlendNoise',
  title: 'Blend Noise (SNB)',
  category: 'fusion',
  description:
    'Saliency-aware Noise Blending. argmax: per pixel take b where saliency_b > saliency_a, else a (ties go to a), ' +
    'the same mask for every channel. soft (FuseGraph extension): weights saliency_b / (saliency_a + saliency_b).',
  inputs: {
    a: { type: 'NOISE', description: 'Base noise (wins ties).' },
    b: { type: 'NOISE', description: 'Other noise.' },
    saliency_a: { type: 'SALIENCY', description: 'Saliency of a.' },
    saliency_b: { type: 'SALIENCY', description: 'Saliency of b.' },
  },
  outputs: { noise: { type: 'NOISE', description: 'Blended noise.' } },
  params: { mode: { kind: 'enum', default: 'argmax', options: ['argmax', 'soft'], description: 'Hard per-pixel choice or soft weights.' } },
  output: false,
});
