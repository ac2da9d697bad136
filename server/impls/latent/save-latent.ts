import { mkdir } from 'node:fs/promises';
import { SaveLatent } from '../../../nodes/index.js';
import { encodeNpy } from '../../sd/npy.js';
import { replaceFile } from '../paths.js';
import { implement } from '../types.js';

export const saveLatent = implement(SaveLatent, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    await mkdir(ctx.roots.output, { recursive: true });
    // Replaced, never written through: a symlink at the name is swapped for the file, not followed out of output/.
    const file = await replaceFile(ctx.roots.output, params.filename, encodeNpy(inputs.latent.data, inputs.latent.shape));
    ctx.recordOutput({ node: ctx.node, kind: 'latent', name: params.filename, path: file });
    return {};
  },
});
