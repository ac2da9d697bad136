import type { SamplerName, SigmaSchedule } from '../../../nodes/index.js';
import { Sampler } from '../../../nodes/index.js';
import { encodePreview } from '../../sd/preview.js';
import { NumpyRandomState } from '../../sd/rng.js';
import type { SamplerRun } from '../../sd/schedulers/index.js';
import { createSampler } from '../../sd/schedulers/index.js';
import type { StepContext } from '../types.js';
import { implement } from '../types.js';

export const sampler = implement(Sampler, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    const { model, noise, latent } = inputs;
    const shape = latent.shape;
    let run: SamplerRun;
    try {
      // Enum params are validated against the definition's options before a run starts.
      const o = { sampler: params.sampler as SamplerName, schedule: params.schedule as SigmaSchedule, steps: params.steps, batch: shape[0] };
      run = createSampler(model.schedulerJson, o);
    } catch (err) {
      const message = (err as Error).message;
      const field = err instanceof RangeError ? 'params.steps' : /schedule/.test(message) && !/config/.test(message) ? 'params.schedule' : 'inputs.model';
      throw ctx.error(message, field);
    }
    // Like diffusers' pipelines: the unit-variance start noise times the scheduler's init_noise_sigma.
    const x = Float32Array.from(latent.data, (v) => v * run.initNoiseSigma);
    const modelInput = new Float32Array(x.length);
    const rng = run.stochastic ? new NumpyRandomState(params.seed) : null;
    const stepNoise = rng ? new Float32Array(x.length) : undefined;
    const calls = run.timesteps.length;
    for (let i = 0; i < calls; i++) {
      ctx.checkCancelled();
      const t = run.timesteps[i]!;
      run.modelInput(modelInput, x, i);
      // Consumers see what the UNet sees: the scaled model input and the (possibly fractional) timestep.
      const step: StepContext = { loop: ctx.node, index: i, steps: calls, t, x: { data: modelInput, shape }, memo: new Map() };
      const eps = (await noise(step)).eps;
      if (eps.length !== x.length) throw ctx.error(`noise has ${eps.length} values but the latent has ${x.length}`, 'inputs.noise');
      if (rng && stepNoise) for (let j = 0; j < stepNoise.length; j++) stepNoise[j] = rng.standardNormal();
      run.step(x, eps, i, stepNoise);
      if (ctx.previewEvery > 0 && ((i + 1) % ctx.previewEvery === 0 || i === calls - 1)) {
        ctx.emit({ type: 'preview', node: ctx.node, step: i + 1, steps: calls, png: await encodePreview(run.denoised, shape) });
      }
      ctx.emit({ type: 'progress', node: ctx.node, step: i + 1, steps: calls, t });
    }
    return { latent: { data: x, shape } };
  },
});
