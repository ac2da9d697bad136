import { NoiseLatent } from '../../../nodes/index.js';
import { randnFloat32 } from '../../sd/rng.js';
import { implement } from '../types.js';

export const noiseLatent = implement(NoiseLatent, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    const { latentChannels, vaeFactor } = inputs.model.info;
    for (const field of ['width', 'height'] as const) {
      if (params[field] % vaeFactor !== 0) throw ctx.error(`${field} ${params[field]} is not a multiple of the model's VAE factor ${vaeFactor}`, `params.${field}`);
    }
    const shape = [params.batch, latentChannels, params.height / vaeFactor, params.width / vaeFactor];
    return { latent: { data: randnFloat32(params.seed, shape), shape } };
  },
});
