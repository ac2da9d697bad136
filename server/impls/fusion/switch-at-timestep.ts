import { SwitchAtTimestep } from '../../../nodes/index.js';
import { implement } from '../types.js';

export const switchAtTimestep = implement(SwitchAtTimestep, {
  kind: 'per-step',
  // Strict comparison on the DDPM timestep, as the original code's `t[0] > fusion_start`.
  evaluate: (step, inputs, params) => (step.t > params.t ? inputs.before(step) : inputs.after(step)),
});
