import { defineNode } from '../../define.js';

export const EncodePrompt = defineNode({
  type: 'EncodePrompt',
  title: 'Encode Prompt',
  category: 'conditioning',
  description:
    "Tokenizes the text with the model's CLIP tokenizer (77 tokens, truncated, padded) and encodes it with the model's " +
    'text encoder (last hidden state). Use an empty text for the unconditional (negative) prompt.',
  inputs: { model: { type: 'MODEL', description: 'Model whose tokenizer and text encoder are used.' } },
  outputs: { cond: { type: 'CONDITIONING', description: 'Text embedding [1, 77, hidden].' } },
  params: { text: { kind: 'string', default: '', multiline: true, maxLength: 10000, description: 'The prompt.' } },
  output: false,
});
