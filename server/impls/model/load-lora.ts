import path from 'node:path';
import { LoadLoRA } from '../../../nodes/index.js';
import { fileStamps } from '../../sd/model-folder.js';
import { checkLora, type LoraCheck } from '../../sd/lora-folder.js';
import { pathKind, type ModelSource } from '../../sd/model-source.js';
import { resolveInRoot } from '../paths.js';
import { implement } from '../types.js';

/** The upstream model's source with this LoRA appended: the model manager builds and caches that combination. */
function withLora(source: ModelSource, file: string, params: { strength_model: number; strength_clip: number }): ModelSource {
  return { ...source, loras: [...source.loras, { file, strengthModel: params.strength_model, strengthClip: params.strength_clip }] };
}

/** What a LoRA does not match in a model, read once per version of both files (it reads the LoRA's tensors). */
const unmatchedSeen = new Map<string, Promise<LoraCheck['unmatched']>>();
async function unmatchedKeys(checkpoint: string, lora: string): Promise<LoraCheck['unmatched']> {
  const stamp = await fileStamps([checkpoint, lora]);
  let pending = unmatchedSeen.get(stamp);
  if (!pending) {
    pending = checkLora(checkpoint, lora).then((c) => c.unmatched);
    pending.catch(() => unmatchedSeen.delete(stamp));
    unmatchedSeen.set(stamp, pending);
  }
  return pending;
}

export const loadLora = implement(LoadLoRA, {
  kind: 'once',
  // The model manager keeps the merged model across runs, as LoadModel's sessions are kept.
  cacheable: false,
  async fingerprint(params, roots) {
    const file = resolveInRoot(roots.models, params.path);
    return file ? `${await fileStamps([file])}|${params.strength_model}|${params.strength_clip}` : 'escapes';
  },
  // What the LoRA is and whether it fits the model, read before any run: another family, a file that is not a LoRA
  // (LoHa and others are named), NaN, or no key of the model are refused on params.path; keys the model lacks are
  // said in a warning when the run loads it.
  async admit(params, facts) {
    const model = facts.model('model');
    const file = resolveInRoot(facts.roots.models, params.path);
    if (!model?.source || !file) return;
    if (model.source.kind !== 'checkpoint') {
      facts.report({ field: 'inputs.model', code: 'model_unsupported', message: 'LoRA is applied to checkpoint files; this model is an ONNX folder, whose weights FuseGraph cannot map yet' });
      return;
    }
    if ((await pathKind(file)) !== 'file') {
      facts.report({ field: 'params.path', code: 'model_unavailable', message: `LoRA not found: ${params.path}`, actual: params.path });
      return;
    }
    try {
      await facts.checkLora(model.source.path, file);
    } catch (err) {
      facts.report({ field: 'params.path', code: 'model_unsupported', message: (err as Error).message, actual: params.path });
      return;
    }
    facts.provideModel({ ...model, source: withLora(model.source, file, params) });
  },
  async run(inputs, params, ctx) {
    const file = resolveInRoot(ctx.roots.models, params.path);
    if (!file) throw ctx.error(`path "${params.path}" escapes the models folder`, 'params.path');
    const base = inputs.model;
    if (base.source.kind !== 'checkpoint') {
      throw ctx.error('LoRA is applied to checkpoint files; this model is an ONNX folder, whose weights FuseGraph cannot map yet', 'inputs.model');
    }
    try {
      const unmatched = await unmatchedKeys(base.source.path, file);
      if (unmatched.count > 0) {
        ctx.warn(`${unmatched.count} module${unmatched.count === 1 ? '' : 's'} of ${path.basename(file)} have no weight in this model and are ignored (first: ${unmatched.first.slice(0, 3).join(', ')})`);
      }
      return { model: await ctx.acquireModel(withLora(base.source, file, params), base.providerChoice) };
    } catch (err) {
      throw ctx.error(`${path.basename(file)}: ${(err as Error).message}`, 'params.path', err);
    }
  },
});
