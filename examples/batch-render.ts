/**
 * Renders a list of prompts through the demo fusion graph with a seed sweep, over one WebSocket, and writes each
 * fused image. Only `fusegraph/client` talks to the server; the images come inline with the run's frames.
 *
 *   node --import tsx examples/batch-render.ts --seeds 0,1,2 --out output/batch "a red star on the left" "a blue circle in the center"
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { connect, InvalidGraphError, RunFailedError } from 'fusegraph/client';
import { fusionGraph } from './fusion-graph.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    server: { type: 'string', default: 'http://127.0.0.1:8188' },
    token: { type: 'string', default: process.env.FUSEGRAPH_TOKEN },
    out: { type: 'string', default: 'output/batch' },
    seeds: { type: 'string', default: '0,1,2,3' },
    steps: { type: 'string', default: '50' },
  },
});
const prompts = positionals.length ? positionals : ['a red star on the left', 'a green triangle in the center'];
const seeds = values.seeds.split(',').map(Number);
const steps = Number(values.steps);
const slug = (text: string) => text.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();

const client = await connect(values.server, { token: values.token, previews: false });
await mkdir(values.out, { recursive: true });
// Everything is queued at once; the server runs it in order, and the loaded models and cached nodes are shared.
const jobs = prompts.flatMap((prompt) => seeds.map((seed) => ({
  prompt, seed, handle: client.run(fusionGraph({ prompt, seed, steps, compare: false }), { inlineOutputs: true }),
})));
let failed = 0;
for (const { prompt, seed, handle } of jobs) {
  try {
    const [image] = await handle.images();
    const file = path.join(values.out, `${slug(prompt)}_seed${seed}.png`);
    await writeFile(file, image!.bytes);
    console.log(file);
  } catch (err) {
    failed += 1;
    if (err instanceof InvalidGraphError || err instanceof RunFailedError) console.error(`"${prompt}" seed ${seed}: ${err.message}`);
    else throw err;
  }
}
await client.close();
process.exitCode = failed ? 1 : 0;
