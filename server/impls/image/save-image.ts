import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SaveImage } from '../../../nodes/index.js';
import { toRgbBytes } from '../../sd/image.js';
import { encodePngWithMetadata } from '../../sd/png-meta.js';
import type { RunContext } from '../types.js';
import { implement } from '../types.js';

async function provenance(ctx: RunContext): Promise<unknown> {
  const models = [];
  for (const m of ctx.loadedModels()) {
    // A checkpoint's model is recorded by its file (its ONNX folder is a cached build that may be gone).
    models.push({ folder: path.relative(ctx.roots.models, m.checkpoint ?? m.folder.dir).split(path.sep).join('/'), provider: m.provider, sha256: await m.fileHashes() });
  }
  // The graph as submitted, muted and bypassed nodes, groups, notes and ui included: re-opening the PNG gives it back whole.
  return { graph: ctx.plan.submitted, params: ctx.plan.params, models, node: ctx.node, created: new Date().toISOString() };
}

/** Next free `<prefix>_NNNNN.png`; exclusive create keeps two concurrent runs from taking the same name. */
export async function writeNumbered(dir: string, prefix: string, png: Buffer): Promise<string> {
  const pattern = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}_(\\d{5,})\\.png$`);
  let next = 1;
  for (const f of await readdir(dir)) {
    const m = pattern.exec(f);
    if (m) next = Math.max(next, Number(m[1]) + 1);
  }
  for (;; next++) {
    const name = `${prefix}_${String(next).padStart(5, '0')}.png`;
    try {
      await writeFile(path.join(dir, name), png, { flag: 'wx' });
      return name;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

export const saveImage = implement(SaveImage, {
  kind: 'once',
  cacheable: true,
  async run(inputs, params, ctx) {
    const { data, shape } = inputs.image;
    const [n, , height, width] = shape as [number, number, number, number];
    await mkdir(ctx.roots.output, { recursive: true });
    const meta = await provenance(ctx);
    const per = 3 * height * width;
    for (let i = 0; i < n; i++) {
      const png = await encodePngWithMetadata(toRgbBytes(data.subarray(i * per, (i + 1) * per), height, width), width, height, meta);
      const name = await writeNumbered(ctx.roots.output, params.prefix, png);
      ctx.recordOutput({ node: ctx.node, kind: 'image', name, path: path.join(ctx.roots.output, name) });
    }
    return {};
  },
});
