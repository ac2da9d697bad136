import { defineNode } from '../../define.js';

export const LoadModel = defineNode({
  type: 'LoadModel',
  title: 'Load Model',
  category: 'model',
  description:
    'Loads a Stable Diffusion 1.x-family model exported to the diffusers/optimum ONNX folder layout ' +
    '(text_encoder/, unet/, vae_decoder/, tokenizer/, scheduler/). Sessions are created once and reused.',
  inputs: {},
  outputs: { model: { type: 'MODEL', description: 'The loaded model: text encoder, UNet, VAE decoder, tokenizer, scheduler.' } },
  params: {
    path: { kind: 'path', root: 'models', default: '', description: 'Model folder, relative to the models root.' },
    provider: {
      kind: 'enum',
      default: 'auto',
      options: ['auto', 'cpu', 'webgpu', 'cuda'],
      description: 'ONNX Runtime execution provider. auto = cuda if installed, else webgpu if an adapter exists, else cpu.',
    },
  },
  output: false,
});
