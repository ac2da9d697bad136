import { BlendNoise } from '../../../nodes/index.js';
import { blendArgmax, blendSoft } from '../../sampler/blend.js';
import type { NoiseValue, StepFn } from '../types.js';
import { implement } from '../types.js';

export const blendNoise = implement(BlendNoise, {
  kind: 'per-step',
  async evaluate(step, inputs, params, ctx): Promise<NoiseValue> {
    const wired: [string, StepFn<NoiseValue>, StepFn<Float32Array>][] = [
      ['a', inputs.a, inputs.saliency_a],
      ['b', inputs.b, inputs.saliency_b],
    ];
    for (const name of ['c', 'd'] as const) {
      const noise = inputs[name];
      const saliency = inputs[`saliency_${name}`];
      if (noise && !saliency) throw ctx.error(`${name} is wired but saliency_${name} is not`, `inputs.saliency_${name}`);
      if (saliency && !noise) throw ctx.error(`saliency_${name} is wired but ${name} is not`, `inputs.${name}`);
      if (noise && saliency) wired.push([name, noise, saliency]);
    }
    // Every model's UNet call is issued together: they run on separate worker threads.
    const [noises, sals] = await Promise.all([
      Promise.all(wired.map(([, n]) => n(step))),
      Promise.all(wired.map(([, , s]) => s(step))),
    ]);
    const a = noises[0]!;
    const [batch, channels, height, width] = a.shape as [number, number, number, number];
    for (let k = 1; k < wired.length; k++) {
      if (noises[k]!.eps.length !== a.eps.length) throw ctx.error(`a and ${wired[k]![0]} have different latent shapes`, `inputs.${wired[k]![0]}`);
    }
    for (let k = 0; k < wired.length; k++) {
      const name = wired[k]![0];
      if (sals[k]!.length !== batch * height * width) throw ctx.error(`saliency_${name} does not match the latent shape`, `inputs.saliency_${name}`);
    }
    const eps = new Float32Array(a.eps.length);
    const shape = { batch, channels, height, width };
    const epsList = noises.map((n) => n.eps);
    if (params.mode === 'soft') blendSoft(eps, epsList, sals, shape);
    else blendArgmax(eps, epsList, sals, shape);
    return { eps, shape: a.shape };
  },
});
