import { LoadModel } from '../../../nodes/index.js';
import { modelFolderStamp } from '../../sd/model-folder.js';
import { resolveInRoot } from '../paths.js';
import { implement } from '../types.js';

export const loadModel = implement(LoadModel, {
  kind: 'once',
  // The model manager already keeps sessions across runs; loading through it again is what keeps them in use.
  cacheable: false,
  async fingerprint(params, roots) {
    const dir = resolveInRoot(roots.models, params.path);
    return dir ? modelFolderStamp(dir) : 'escapes';
  },
  async run(_inputs, params, ctx) {
    const dir = resolveInRoot(ctx.roots.models, params.path);
    if (!dir) throw ctx.error(`path "${params.path}" escapes the models folder`, 'params.path');
    try {
      return { model: await ctx.acquireModel(dir, params.provider) };
    } catch (err) {
      throw ctx.error((err as Error).message, 'params.path');
    }
  },
});
