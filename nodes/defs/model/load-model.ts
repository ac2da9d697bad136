import { defineNode } from '../../define.js';

export const LoadModel = defineNode({
  type: 'LoadModel',
  title: 'Load Model',
  category: 'model',
  description:
    'Loads a Stable Diffusion 1.x/2.x model: a diffusers/optimum ONNX folder (text_encoder/, unet/, vae_decoder/, ' +
    'tokenizer/, scheduler/) or a checkpoint file (.safetensors, .ckpt, .pt, .pth), which FuseGraph builds into ONNX ' +
    'once and caches. Sessions are created once and reused.',
  inputs: {},
  outputs: { model: { type: 'MODEL', description: 'The loaded model: text encoder, UNet, VAE decoder, tokenizer, scheduler.' } },
  params: {
    path: {
      kind: 'path', root: 'models', default: '', lists: ['folder', 'checkpoint'],
      description: 'Model folder or checkpoint file, relative to the models root (e.g. sd-v1-4 or checkpoints/sd-v1-4.ckpt).',
    },
    provider: {
      kind: 'enum',
      default: 'auto',
      options: ['auto', 'cpu', 'webgpu', 'cuda'],
      description: 'ONNX Runtime execution provider. auto = cuda if installed, else webgpu if an adapter exists, else cpu.',
    },
    ema: {
      kind: 'bool',
      default: false,
      description:
        "A checkpoint's EMA UNet weights (model_ema.*) instead of model.diffusion_model.*. Off = what LDM's v1-inference.yaml " +
        '(use_ema: False), the MagicFusion code and ComfyUI load.',
    },
    vae: {
      kind: 'path', root: 'models', default: '', emptyMeans: "the model's own", lists: ['vae', 'checkpoint', 'folder'],
      description:
        "Empty: the model's own VAE. Else a standalone VAE under the models root (a .safetensors/.ckpt with bare, " +
        'first_stage_model. or diffusers AutoencoderKL keys, or an ONNX folder with vae_decoder/).',
    },
    prediction: {
      kind: 'enum',
      default: 'auto',
      options: ['auto', 'epsilon', 'v_prediction'],
      description:
        'What the UNet predicts. auto: ONNX folders say it in scheduler_config.json; checkpoints by the rule in docs/models.md ' +
        '(a sidecar .yaml, the file\'s metadata, then the SD-2 768-v weight signature).',
    },
  },
  output: false,
});
