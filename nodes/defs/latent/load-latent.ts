import { defineNode } from '../../define.js';

export const LoadLatent = defineNode({
  type: 'LoadLatent',
  title: 'Load Latent',
  category: 'latent',
  description: 'Reads a latent from a NumPy .npy file (float32 or float64, C order, shape [B, C, H, W]) under the input root.',
  inputs: {},
  outputs: { latent: { type: 'LATENT', description: 'The latent read from the file, as float32.' } },
  params: {
    path: { kind: 'path', root: 'input', extensions: ['.npy'], default: 'latent.npy', description: '.npy file relative to the input root.' },
  },
  output: false,
});
