import { defineNode } from '../../define.js';

export const EncodePrompt = defineNode({
  type: 'EncodePrompt',
  title: 'Encode Prompt',
  category: 'conditioning',
  description:
    "Tokenizes the text with the model's CLIP tokenizer and encodes it with the model's text encoder, in ComfyUI's " +
    'prompt syntax: (word) weighs ×1.1, ((word)) ×1.21, (word:1.3) sets 1.3, \\( \\) are literal brackets, ' +
    'embedding:NAME splices the textual-inversion embedding models/embeddings/NAME; a prompt over 75 tokens is ' +
    'encoded in 77-token chunks, concatenated. Use an empty text for the unconditional (negative) prompt.',
  inputs: { model: { type: 'MODEL', description: 'Model whose tokenizer and text encoder are used.' } },
  outputs: { cond: { type: 'CONDITIONING', description: 'Text embedding [1, 77 × chunks, hidden].' } },
  params: {
    text: { kind: 'string', default: '', multiline: true, maxLength: 10000, description: 'The prompt.' },
    clip_skip: {
      kind: 'int',
      default: 1,
      min: 1,
      max: 2,
      description:
        "1: the text encoder's last layer (the model's default); 2: the penultimate layer, layer-normed (ComfyUI's " +
        'CLIPSetLastLayer −2, A1111 "CLIP skip 2"). SD-2 already uses the penultimate layer, so 2 equals 1 there.',
    },
  },
  output: false,
});
