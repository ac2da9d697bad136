import { defineNode } from '../../define.js';

export const PredictNoise = defineNode({
  type: 'PredictNoise',
  title: 'Predict Noise (CFG)',
  category: 'sampling',
  description:
    "The model's classifier-free-guided noise prediction at the current timestep: ε = ε_u + s·(ε_c − ε_u). " +
    'Unconditional and conditional run as one batched UNet call, and only at steps where a consumer needs it.',
  inputs: {
    model: { type: 'MODEL', description: 'Model whose UNet predicts the noise.' },
    positive: { type: 'CONDITIONING', description: 'Conditional text embedding.' },
    negative: { type: 'CONDITIONING', description: 'Unconditional text embedding (usually the empty prompt).' },
  },
  outputs: { noise: { type: 'NOISE', description: 'Guided noise ε(x_t, t), with its unconditional and conditional parts.' } },
  params: {
    guidance_scale: { kind: 'float', default: 7.5, min: 0, max: 100, step: 0.5, description: 'CFG scale s.' },
  },
  output: false,
  schedule: { role: 'model', model: 'model' },
});
