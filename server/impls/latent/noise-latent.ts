import { NoiseLatent } from '../../../nodes/index.js';
import { randnFloat32 } from '../../sd/rng.js';
import { implement } from '../types.js';

export const noiseLatent = implement(NoiseLatent, {
  kind: 'once',
  cacheable: true,
  async admit(params, facts) {
    const m = facts.model('model');
    if (!m) return;
    const f = m.vaeFactor ?? 1;
    const step = f * (m.unetFactor ?? 1);
    let sizeOk = true;
    for (const field of ['width', 'height'] as const) {
      const side = params[field];
      if (side % step === 0) continue;
      sizeOk = false;
      const why = side % f !== 0
        ? `is not a multiple of the model's VAE factor ${f}`
        : `gives a latent side of ${side / f}, which the UNet (downsampling by ${m.unetFactor}) cannot divide evenly`;
      facts.report({ field: `params.${field}`, code: 'param_range', message: `${field} ${side} ${why}`, expected: `a multiple of ${step}`, actual: String(side) });
    }
    if (sizeOk) {
      facts.usesLatent({ batch: params.batch, latentPixels: (params.width / f) * (params.height / f), imagePixels: params.width * params.height }, 'params.width');
    }
  },
  async run(inputs, params, ctx) {
    const { latentChannels, vaeFactor } = inputs.model.info;
    for (const field of ['width', 'height'] as const) {
      if (params[field] % vaeFactor !== 0) throw ctx.error(`${field} ${params[field]} is not a multiple of the model's VAE factor ${vaeFactor}`, `params.${field}`);
    }
    const shape = [params.batch, latentChannels, params.height / vaeFactor, params.width / vaeFactor];
    return { latent: { data: randnFloat32(params.seed, shape), shape } };
  },
});
