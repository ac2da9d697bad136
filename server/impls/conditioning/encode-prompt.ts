import { EncodePrompt } from '../../../nodes/index.js';
import { findEmbeddingFile, inspectEmbedding, EMBEDDINGS_FOLDER } from '../../sd/embeddings.js';
import { fileStamps } from '../../sd/model-folder.js';
import { PromptError, embeddingCandidates, encodePrompt as encodePromptText } from '../../sd/prompt-encoding.js';
import { tokenizePrompt } from '../../sd/prompt-syntax.js';
import { implement } from '../types.js';

/** Counts vectors only: validation needs which embeddings exist and their sizes, not a real tokenizer's ids. */
const COUNTING_TOKENIZER = {
  bosTokenId: 0, eosTokenId: 0, padTokenId: 0, modelMaxLength: 77,
  tokens: (text: string) => [...text].map(() => 0),
};

export const encodePrompt = implement(EncodePrompt, {
  kind: 'once',
  cacheable: true,
  // The embedding files a prompt names are part of what it encodes to: a replaced file must not reuse a cached result.
  async fingerprint(params, roots) {
    const files = await Promise.all(embeddingCandidates(params.text).map((n) => findEmbeddingFile(roots.models, n)));
    return fileStamps(files.filter((f): f is string => f !== null));
  },
  // Before any model loads: every embedding the text names exists, is readable and has the text encoder's width; no
  // weight is inf/NaN. (Whether an ONNX folder's text encoder takes embeddings, or has the penultimate layer for
  // clip_skip 2, its session's metadata says; that is checked when it runs, naming the field.)
  async admit(params, facts) {
    const width = facts.model('model')?.textWidth ?? null;
    const shapes = new Map<string, { vectors: number; width: number }>();
    const broken: string[] = [];
    for (const name of embeddingCandidates(params.text)) {
      if ((await findEmbeddingFile(facts.roots.models, name)) === null) continue;
      try {
        shapes.set(name, await inspectEmbedding(facts.roots.models, name, width));
      } catch (err) {
        broken.push(name);
        facts.report({ field: 'params.text', code: 'model_unavailable', message: (err as Error).message.replace(facts.roots.models, 'models'), actual: name });
      }
    }
    const t = tokenizePrompt(params.text, COUNTING_TOKENIZER, (name) => shapes.get(name)?.vectors ?? (broken.includes(name) ? 1 : null));
    for (const name of t.missing) {
      facts.report({
        field: 'params.text', code: 'model_unavailable',
        message: `embedding "${name}" not found: no ${EMBEDDINGS_FOLDER}/${name}{.safetensors,.pt,.bin} under the models folder`, actual: `embedding:${name}`,
      });
    }
    for (const name of t.embeddings.keys()) {
      const s = shapes.get(name);
      if (s && width !== null && s.width !== width) {
        facts.report({
          field: 'params.text', code: 'param_range',
          message: `embedding "${name}" has vectors of width ${s.width}, but the model's text encoder has width ${width} (an embedding trained for another model family)`,
          expected: String(width), actual: String(s.width),
        });
      }
    }
    for (const w of t.badWeights) facts.report({ field: 'params.text', code: 'param_range', message: `prompt weight ${w} is not a finite number`, actual: w });
  },
  async run(inputs, params, ctx) {
    const model = inputs.model;
    try {
      const { cond } = await encodePromptText(model, params.text, { clipSkip: params.clip_skip, modelsRoot: ctx.roots.models });
      return { cond: { ...cond, modelKey: model.key } };
    } catch (err) {
      if (err instanceof PromptError) throw ctx.error(err.message, err.field, err);
      throw ctx.error((err as Error).message, 'inputs.model', err);
    }
  },
});
