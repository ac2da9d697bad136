import { Decode } from '../../../nodes/index.js';
import { implement } from '../types.js';

export const decode = implement(Decode, {
  kind: 'once',
  cacheable: true,
  async admit(_params, facts) {
    const m = facts.model('model');
    if (m) facts.usesVae(m);
  },
  async run(inputs, _params, ctx) {
    const { model, latent } = inputs;
    if (latent.shape[1] !== model.info.latentChannels) {
      throw ctx.error(`latent has ${latent.shape[1]} channels but this VAE decodes ${model.info.latentChannels}`, 'inputs.latent');
    }
    return { image: { ...(await model.decode(latent)), model } };
  },
});
