import { SaliencyMask } from '../../../nodes/index.js';
import { SaliencyComputer } from '../../sampler/saliency.js';
import type { RunContext } from '../types.js';
import { implement } from '../types.js';

const computers = new WeakMap<RunContext, { key: string; computer: SaliencyComputer; out: Float32Array }>();

export const saliencyMask = implement(SaliencyMask, {
  kind: 'per-step',
  async evaluate(step, inputs, params, ctx) {
    const [noise, uncondSource] = await Promise.all([inputs.noise(step), inputs.uncond_from?.(step)]);
    if (!noise.parts) throw ctx.error('saliency needs the output of a PredictNoise node (its conditional and unconditional parts)', 'inputs.noise');
    if (uncondSource && !uncondSource.parts) throw ctx.error('uncond_from must be the output of a PredictNoise node', 'inputs.uncond_from');
    if (uncondSource && uncondSource.eps.length !== noise.eps.length) throw ctx.error('uncond_from has a different latent shape', 'inputs.uncond_from');
    const [batch, channels, height, width] = noise.shape as [number, number, number, number];
    const key = noise.shape.join('x');
    let state = computers.get(ctx);
    if (!state || state.key !== key) {
      state = { key, computer: new SaliencyComputer({ batch, channels, height, width }), out: new Float32Array(batch * height * width) };
      computers.set(ctx, state);
    }
    // The result is memoised for this step only and read before the next one, so one buffer per node suffices.
    state.computer.compute(state.out, noise.parts.cond, uncondSource?.parts?.uncond ?? noise.parts.uncond, noise.parts.scale, params.k);
    return state.out;
  },
});
