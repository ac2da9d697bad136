import { defineNode } from '../../define.js';

export const Decode = defineNode({
  type: 'Decode',
  title: 'VAE Decode',
  category: 'image',
  description: "Decodes latent / scaling_factor with the model's VAE decoder, one image at a time.",
  inputs: {
    model: { type: 'MODEL', description: 'Model whose VAE decoder is used.' },
    latent: { type: 'LATENT', description: 'Latent to decode.' },
  },
  outputs: { image: { type: 'IMAGE', description: 'Decoded images.' } },
  params: {},
  output: false,
});
