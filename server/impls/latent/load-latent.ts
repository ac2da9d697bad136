import { LoadLatent } from '../../../nodes/index.js';
import { decodeNpy } from '../../sd/npy.js';
import { fileStamps } from '../../sd/model-folder.js';
import { OutsideRootError, readInRoot, resolveInRoot } from '../paths.js';
import { implement } from '../types.js';

export const loadLatent = implement(LoadLatent, {
  kind: 'once',
  cacheable: true,
  async fingerprint(params, roots) {
    const file = resolveInRoot(roots.input, params.path);
    return file ? fileStamps([file]) : 'escapes';
  },
  async run(_inputs, params, ctx) {
    const file = resolveInRoot(ctx.roots.input, params.path);
    if (!file) throw ctx.error(`path "${params.path}" escapes the input folder`, 'params.path');
    let bytes: Buffer;
    try {
      bytes = await readInRoot(ctx.roots.input, params.path, 'input');
    } catch (err) {
      if (err instanceof OutsideRootError) throw ctx.error(err.message, 'params.path');
      throw ctx.error(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, 'params.path');
    }
    let latent;
    try {
      latent = decodeNpy(bytes, file);
    } catch (err) {
      throw ctx.error((err as Error).message, 'params.path');
    }
    if (latent.shape.length !== 4) throw ctx.error(`${file}: expected a 4-d latent [B, C, H, W], got shape [${latent.shape.join(', ')}]`, 'params.path');
    return { latent };
  },
});
