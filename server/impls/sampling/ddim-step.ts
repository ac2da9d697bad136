import { DDIMStep } from '../../../nodes/index.js';
import { encodePreview } from '../../sd/preview.js';
import { NumpyRandomState } from '../../sd/rng.js';
import { DDIMSchedule } from '../../sd/scheduler.js';
import type { StepContext } from '../types.js';
import { implement } from '../types.js';

export const ddimStep = implement(DDIMStep, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    const { model, noise, latent } = inputs;
    let schedule: DDIMSchedule;
    try {
      schedule = new DDIMSchedule(model.schedulerConfig, params.steps);
    } catch (err) {
      throw ctx.error((err as Error).message, 'params.steps');
    }
    const x = Float32Array.from(latent.data);
    const shape = latent.shape;
    const steps = schedule.timesteps.length;
    const rng = params.eta > 0 ? new NumpyRandomState(params.seed) : null;
    const stepNoise = rng ? new Float32Array(x.length) : undefined;
    const x0 = ctx.previewEvery > 0 ? new Float32Array(x.length) : null;
    for (let i = 0; i < steps; i++) {
      ctx.checkCancelled();
      await ctx.gateStep(i + 1, steps);
      const t = schedule.timesteps[i]!;
      const step: StepContext = { loop: ctx.node, index: i, steps, t, x: { data: x, shape }, memo: new Map() };
      const eps = (await noise(step)).eps;
      if (eps.length !== x.length) throw ctx.error(`noise has ${eps.length} values but the latent has ${x.length}`, 'inputs.noise');
      if (x0 && ((i + 1) % ctx.previewEvery === 0 || i === steps - 1)) {
        schedule.predictX0(x0, eps, i, x);
        ctx.emit({ type: 'preview', node: ctx.node, step: i + 1, steps, png: await encodePreview(x0, shape) });
      }
      if (rng && stepNoise) for (let j = 0; j < stepNoise.length; j++) stepNoise[j] = rng.standardNormal();
      schedule.step(x, eps, i, x, params.eta, stepNoise);
      ctx.emit({ type: 'progress', node: ctx.node, step: i + 1, steps, t });
    }
    return { latent: { data: x, shape } };
  },
});
