import type { SamplerName, SigmaSchedule } from '../../../nodes/index.js';
import { Sampler } from '../../../nodes/index.js';
import type { SamplerRun } from '../../sd/schedulers/index.js';
import { createSampler } from '../../sd/schedulers/index.js';
import type { ParamValues } from '../../../nodes/define.js';
import { implement } from '../types.js';
import { sample } from './loop.js';

type Params = ParamValues<(typeof Sampler)['params']>;

/** The chosen scheduler on the model's config, or the field at fault and why: the one check, for admit and run. */
function samplerRun(schedulerJson: unknown, params: Params, batch: number): SamplerRun | { readonly field: string; readonly problem: string } {
  try {
    // Enum params are validated against the definition's options before a run starts.
    return createSampler(schedulerJson, { sampler: params.sampler as SamplerName, schedule: params.schedule as SigmaSchedule, steps: params.steps, batch });
  } catch (err) {
    const message = (err as Error).message;
    const field = err instanceof RangeError ? 'params.steps' : /schedule/.test(message) && !/config/.test(message) ? 'params.schedule' : 'inputs.model';
    return { field, problem: message };
  }
}

const failed = (r: ReturnType<typeof samplerRun>): r is { readonly field: string; readonly problem: string } => 'problem' in r;

export const sampler = implement(Sampler, {
  kind: 'once',
  cacheable: true,
  async admit(params, facts) {
    const model = facts.model('model');
    if (!model || model.schedulerJson === null) return;
    const run = samplerRun(model.schedulerJson, params, 1);
    if (!failed(run)) return;
    facts.report({
      field: run.field, code: 'param_range',
      message: `the model's scheduler cannot run ${params.sampler} with ${params.steps} steps: ${run.problem}`,
      ...(run.field === 'params.steps' ? { actual: String(params.steps) } : {}),
    });
  },
  async run(inputs, params, ctx) {
    const { model, noise, latent } = inputs;
    const run = samplerRun(model.schedulerJson, params, latent.shape[0]!);
    if (failed(run)) throw ctx.error(run.problem, run.field);
    // Like diffusers' pipelines: the unit-variance start noise times the scheduler's init_noise_sigma.
    const x = Float32Array.from(latent.data, (v) => v * run.initNoiseSigma);
    return {
      latent: await sample(ctx, noise, {
        timesteps: run.timesteps,
        stochastic: run.stochastic,
        alphaCumprod: (i) => run.alphaCumprodOfCall(i),
        modelInput: (out, xt, i) => {
          run.modelInput(out, xt, i);
          return out;
        },
        step: (xt, eps, i, stepNoise, x0) => {
          run.step(xt, eps, i, stepNoise);
          if (x0) x0.set(run.denoised);
        },
      }, { data: x, shape: latent.shape }, params.seed),
    };
  },
});
