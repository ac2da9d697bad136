import { defineNode } from '../../define.js';

export const NoiseLatent = defineNode({
  type: 'NoiseLatent',
  title: 'Noise Latent',
  category: 'latent',
  description:
    'The starting latent x_T: numpy.random.RandomState(seed).standard_normal((batch, C, H/f, W/f)) as float32, ' +
    "exactly as diffusers' ONNX pipeline draws it. Channels C and factor f come from the model.",
  inputs: { model: { type: 'MODEL', description: 'Model whose latent shape (channels, VAE factor) is used.' } },
  outputs: { latent: { type: 'LATENT', description: 'Gaussian latent [batch, C, H/f, W/f].' } },
  params: {
    seed: { kind: 'int', default: 0, min: 0, max: 4294967295, seed: true, description: 'NumPy legacy seed (MT19937).' },
    width: { kind: 'int', default: 512, min: 8, max: 4096, step: 8, description: 'Image width in pixels (a multiple of the VAE factor).' },
    height: { kind: 'int', default: 512, min: 8, max: 4096, step: 8, description: 'Image height in pixels (a multiple of the VAE factor).' },
    batch: { kind: 'int', default: 1, min: 1, max: 64, description: 'Number of images.' },
  },
  output: false,
});
