import { LoadModel } from '../../../nodes/index.js';
import { resolveInRoot } from '../paths.js';
import { implement } from '../types.js';

export const loadModel = implement(LoadModel, {
  kind: 'once',
  // The model manager already keeps sessions across runs; loading through it again is what keeps them in use.
  cacheable: false,
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
