import { BlendNoise } from '../../../nodes/index.js';
import { blendArgmax, blendSoft } from '../../sampler/blend.js';
import type { NoiseValue } from '../types.js';
import { implement } from '../types.js';

export const blendNoise = implement(BlendNoise, {
  kind: 'per-step',
  async evaluate(step, inputs, params, ctx): Promise<NoiseValue> {
    // Both models' UNet calls are issued together: they run on separate worker threads.
    const [a, b, salA, salB] = await Promise.all([inputs.a(step), inputs.b(step), inputs.saliency_a(step), inputs.saliency_b(step)]);
    if (a.eps.length !== b.eps.length) throw ctx.error('a and b have different latent shapes', 'inputs.b');
    const [batch, channels, height, width] = a.shape as [number, number, number, number];
    if (salA.length !== batch * height * width) throw ctx.error('saliency_a does not match the latent shape', 'inputs.saliency_a');
    if (salB.length !== batch * height * width) throw ctx.error('saliency_b does not match the latent shape', 'inputs.saliency_b');
    const eps = new Float32Array(a.eps.length);
    const shape = { batch, channels, height, width };
    if (params.mode === 'soft') blendSoft(eps, a.eps, b.eps, salA, salB, shape);
    else blendArgmax(eps, a.eps, b.eps, salA, salB, shape);
    return { eps, shape: a.shape };
  },
});
