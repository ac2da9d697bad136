import { defineNode } from '../../define.js';

export const SwitchAtTimestep = defineNode({
  type: 'SwitchAtTimestep',
  title: 'Switch At Timestep',
  category: 'fusion',
  description:
    'Uses `before` while the DDPM timestep t > the threshold (strict, 0…1000 units as the original code) and `after` ' +
    'otherwise. The branch not taken is not computed.',
  inputs: {
    before: { type: 'NOISE', description: 'Noise for the early, noisy steps (t > threshold).' },
    after: { type: 'NOISE', description: 'Noise for the late steps (t ≤ threshold).' },
  },
  outputs: { noise: { type: 'NOISE', description: 'The selected noise.' } },
  params: { t: { kind: 'int', default: 600, min: 0, max: 1000, step: 10, description: 'Threshold timestep.' } },
  output: false,
  schedule: { role: 'switch', threshold: 't', above: 'before', atOrBelow: 'after' },
});
