import { defineNode } from '../../define.js';

export const SaveLatent = defineNode({
  type: 'SaveLatent',
  title: 'Save Latent',
  category: 'latent',
  description: 'Writes the latent as a NumPy .npy file (float32, little-endian, C order, [B, C, H, W]) in the output folder.',
  inputs: { latent: { type: 'LATENT', description: 'Latent to save.' } },
  outputs: {},
  params: {
    filename: {
      kind: 'string', default: 'latent.npy', maxLength: 200, pattern: '^[A-Za-z0-9_-][A-Za-z0-9_.-]*\\.npy$',
      description: 'File name inside the output folder (letters, digits, _ . -; ends in .npy).',
    },
  },
  output: true,
});
