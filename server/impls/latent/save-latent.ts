import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SaveLatent } from '../../../nodes/index.js';
import { encodeNpy } from '../../sd/npy.js';
import { implement } from '../types.js';

export const saveLatent = implement(SaveLatent, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    await mkdir(ctx.roots.output, { recursive: true });
    const file = path.join(ctx.roots.output, params.filename);
    await writeFile(file, encodeNpy(inputs.latent.data, inputs.latent.shape));
    ctx.recordOutput({ node: ctx.node, kind: 'latent', name: params.filename, path: file });
    return {};
  },
});
