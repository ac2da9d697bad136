import { defineNode } from '../../define.js';

export const BlendNoise = defineNode({
  type: 'BlendNoise',
  title: 'Blend Noise (SNB)',
  category: 'fusion',
  description:
    'Saliency-aware Noise Blending of 2–4 noises. argmax: per pixel take the input with the largest saliency (ties go ' +
    'to the earliest: a, then b, c, d), the same mask for every channel. soft (FuseGraph extension): weights ' +
    'saliency_k / Σ saliency. With a and b alone: b where saliency_b > saliency_a, else a; soft weight of b ' +
    'saliency_b / (saliency_a + saliency_b).',
  inputs: {
    a: { type: 'NOISE', description: 'Base noise (wins ties).' },
    b: { type: 'NOISE', description: 'Other noise.' },
    saliency_a: { type: 'SALIENCY', description: 'Saliency of a.' },
    saliency_b: { type: 'SALIENCY', description: 'Saliency of b.' },
    c: { type: 'NOISE', optional: true, description: 'Optional third noise (needs saliency_c).' },
    saliency_c: { type: 'SALIENCY', optional: true, description: 'Saliency of c.' },
    d: { type: 'NOISE', optional: true, description: 'Optional fourth noise (needs saliency_d).' },
    saliency_d: { type: 'SALIENCY', optional: true, description: 'Saliency of d.' },
  },
  outputs: { noise: { type: 'NOISE', description: 'Blended noise.' } },
  params: { mode: { kind: 'enum', default: 'argmax', options: ['argmax', 'soft'], description: 'Hard per-pixel choice or soft weights.' } },
  output: false,
  schedule: { role: 'blend' },
});
