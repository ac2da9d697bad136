import { defineNode } from '../../define.js';

export const LoadLoRA = defineNode({
  type: 'LoadLoRA',
  title: 'Load LoRA',
  category: 'model',
  description:
    'Merges a LoRA into a checkpoint model, as ComfyUI does: W + strength · (alpha / rank) · up · down, in float32. ' +
    'kohya, diffusers/PEFT and LyCORIS LoCon files; chain several. Only the tensors it changes are rebuilt.',
  inputs: { model: { type: 'MODEL', description: 'A model loaded from a checkpoint file (with or without other LoRAs).' } },
  outputs: { model: { type: 'MODEL', description: 'The model with this LoRA merged in.' } },
  params: {
    path: {
      kind: 'path', root: 'models', default: '', lists: ['lora'], extensions: ['.safetensors', '.ckpt', '.pt', '.pth', '.bin'],
      description: 'LoRA file, relative to the models root (e.g. loras/style.safetensors).',
    },
    strength_model: { kind: 'float', default: 1, min: -10, max: 10, step: 0.05, description: "Strength on the UNet's weights." },
    strength_clip: { kind: 'float', default: 1, min: -10, max: 10, step: 0.05, description: "Strength on the text encoder's weights." },
  },
  output: false,
});
