import { EncodePrompt } from '../../../nodes/index.js';
import { implement } from '../types.js';

export const encodePrompt = implement(EncodePrompt, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params) {
    const model = inputs.model;
    const ids = model.tokenizer.encodePadded(params.text);
    const out = await model.encodeText([ids]);
    return { cond: { ...out, modelKey: model.key } };
  },
});
