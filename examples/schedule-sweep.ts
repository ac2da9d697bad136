/**
 * Sweeps the fusion schedule (SNB while t > T, then the general model) for T = 900, 800, …, 100 on one prompt and
 * seed, and writes a contact sheet: general model alone | T = 900 … T = 100 | cartoon model alone.
 *
 *   node --import tsx examples/schedule-sweep.ts --prompt "a red star on the left" --out output/schedule-sweep.png
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { connect } from 'fusegraph/client';
import { fusionGraph } from './fusion-graph.js';

const { values } = parseArgs({
  options: {
    server: { type: 'string', default: 'http://127.0.0.1:8188' },
    token: { type: 'string', default: process.env.FUSEGRAPH_TOKEN },
    prompt: { type: 'string', default: 'a red star on the left' },
    seed: { type: 'string', default: '0' },
    steps: { type: 'string', default: '50' },
    from: { type: 'string', default: '900' },
    to: { type: 'string', default: '100' },
    by: { type: 'string', default: '100' },
    scale: { type: 'string', default: '4' },
    out: { type: 'string', default: 'output/schedule-sweep.png' },
  },
});
const [from, to, by, scale] = [values.from, values.to, values.by, values.scale].map(Number) as [number, number, number, number];
const thresholds: number[] = [];
for (let t = from; t >= to; t -= by) thresholds.push(t);

const client = await connect(values.server, { token: values.token, previews: false });
const common = { prompt: values.prompt, seed: Number(values.seed), steps: Number(values.steps) };
// The first run also renders each model alone; the others reuse its cached nodes and render only the fused image.
const runs = thresholds.map((switchT, i) => client.run(fusionGraph({ ...common, switchT, compare: i === 0 }), { inlineOutputs: true }));
const images = await Promise.all(runs.map((r) => r.images()));
await client.close();

const byNode = (list: (typeof images)[number], node: string) => list.find((img) => img.node === node)!.bytes;
const tiles = [byNode(images[0]!, 'save_general'), ...images.map((list) => byNode(list, 'save_fused')), byNode(images[0]!, 'save_expert')];
const { width, height } = await sharp(tiles[0]!).metadata();
const [w, h, gap] = [width! * scale, height! * scale, 4];
const composites = await Promise.all(tiles.map(async (bytes, i) => ({
  input: await sharp(bytes).resize(w, h, { kernel: 'nearest' }).png().toBuffer(),
  left: i * (w + gap),
  top: 0,
})));
await mkdir(path.dirname(values.out), { recursive: true });
await sharp({ create: { width: tiles.length * (w + gap) - gap, height: h, channels: 3, background: '#ffffff' } })
  .composite(composites)
  .png()
  .toFile(values.out);
console.log(`${values.out}: general | ${thresholds.map((t) => `t>${t}`).join(' | ')} | cartoon`);
