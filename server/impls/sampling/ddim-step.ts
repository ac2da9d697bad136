import { DDIMStep } from '../../../nodes/index.js';
import type { SchedulerConfig } from '../../sd/scheduler.js';
import { DDIMSchedule } from '../../sd/scheduler.js';
import { implement } from '../types.js';
import { sample } from './loop.js';

/** The DDIM schedule of `steps` steps, or why the model's scheduler cannot take them: the one check, for admit and run. */
function scheduleOf(config: SchedulerConfig, steps: number): DDIMSchedule | { readonly problem: string } {
  try {
    return new DDIMSchedule(config, steps);
  } catch (err) {
    return { problem: (err as Error).message };
  }
}

/** The most DDIM steps a scheduler config accepts (what DDIMSchedule itself would refuse beyond). */
function maxSteps(config: SchedulerConfig): number {
  let lo = 1;
  let hi = config.num_train_timesteps;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (scheduleOf(config, mid) instanceof DDIMSchedule) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export const ddimStep = implement(DDIMStep, {
  kind: 'once',
  cacheable: true,
  async admit(params, facts) {
    const config = facts.model('model')?.scheduler;
    if (!config) return;
    const schedule = scheduleOf(config, params.steps);
    if (schedule instanceof DDIMSchedule) return;
    facts.report({
      field: 'params.steps', code: 'param_range',
      message: `the model's scheduler cannot take ${params.steps} steps: ${schedule.problem}`,
      expected: `at most ${maxSteps(config)}`, actual: String(params.steps),
    });
  },
  async run(inputs, params, ctx) {
    const { model, noise, latent } = inputs;
    const schedule = scheduleOf(model.schedulerConfig, params.steps);
    if (!(schedule instanceof DDIMSchedule)) throw ctx.error(schedule.problem, 'params.steps');
    const eta = params.eta;
    return {
      latent: await sample(ctx, noise, {
        timesteps: schedule.timesteps,
        stochastic: eta > 0,
        alphaCumprod: (i) => schedule.alphaAt(i),
        modelInput: (_out, x) => x,
        step: (x, eps, i, stepNoise, x0) => {
          if (x0) schedule.predictX0(x0, eps, i, x);
          schedule.step(x, eps, i, x, eta, stepNoise);
        },
      }, { data: Float32Array.from(latent.data), shape: latent.shape }, params.seed),
    };
  },
});
