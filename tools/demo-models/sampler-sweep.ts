/**
 * Quality per UNet call of every sampler on the demo models (issue 17): graphs/demo-fusion.json's fused branch with
 * its DDIMStep replaced by a Sampler, for each sampler and step count, over several seeds. For each setting it prints
 * the demo graph's measures of the fused image (star-like count, background roughness and outline contrast ranges,
 * as test/demo/demo-graph.test.ts measures them with measure.ts), the UNet calls of one fused run (both models), and
 * the RMS distance of the final latent to a DDIM 250-step run of the same seed (a converged reference).
 *
 *   npm run sweep:samplers -- [--seeds 8] [--steps 10,15,20,25,50] [--samplers euler,dpmpp_2m] [--schedules default,karras]
 *
 * Output: one Markdown table row per setting (the table in tools/demo-models/README.md), DDIM 50 and 100 first.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Graph } from '../../nodes/graph-format.js';
import { SAMPLER_NAMES } from '../../nodes/index.js';
import { executeGraph } from '../../server/execution/executor.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { findRepoRoot } from '../tiny-models/make-tiny-model.js';
import type { ShapeMeasure } from './measure.js';
import { measureShape } from './measure.js';

/** The graph without the general-alone and cartoon-alone branches: only the fused image is measured. */
const UNUSED = ['save_general', 'decode_general', 'sample_base', 'save_expert', 'decode_expert', 'sample_other', 'eps_other_alone', 'other_own_prompt', 'other_own_uncond'];

/** The demo graph's style thresholds (test/demo/demo-graph.test.ts). */
const PHOTO_MIN_ROUGHNESS = 0.012;
const PHOTO_MAX_OUTLINE = 0.4;

interface Setting {
  readonly label: string;
  /** The fused loop's node: a DDIMStep or a Sampler. */
  readonly node: Graph['nodes'][string];
}

function ddim(steps: number): Setting {
  return { label: `ddim ${steps} (DDIMStep)`, node: { type: 'DDIMStep', params: { steps, eta: 0 } } };
}

function sampler(name: string, schedule: string, steps: number): Setting {
  const label = `${name}${schedule === 'default' ? '' : ` ${schedule}`} ${steps}`;
  return { label, node: { type: 'Sampler', params: { sampler: name, schedule, steps, seed: 0 } } };
}

function graphFor(base: Graph, s: Setting, seed: number): Graph {
  const g = structuredClone(base);
  for (const id of UNUSED) delete g.nodes[id];
  g.nodes.noise!.params = { ...g.nodes.noise!.params, seed };
  g.nodes.sample_fused = { ...s.node, inputs: g.nodes.sample_fused!.inputs };
  g.nodes.save_latent = { type: 'SaveLatent', params: { filename: `x_${seed}.npy` }, inputs: { latent: { node: 'sample_fused', output: 'latent' } } };
  return g;
}

interface SeedRun {
  readonly measure: ShapeMeasure;
  readonly latent: Float32Array;
  readonly calls: number;
}

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '8' },
    steps: { type: 'string', default: '10,15,20,25,50' },
    samplers: { type: 'string', default: SAMPLER_NAMES.join(',') },
    schedules: { type: 'string', default: 'default' },
    extra: { type: 'string', default: 'dpmpp_2m:karras' },
  },
});
const seeds = Array.from({ length: Number(values.seeds) }, (_, i) => i);
const root = findRepoRoot();
const base = JSON.parse(await readFile(path.join(root, 'graphs', 'demo-fusion.json'), 'utf8')) as Graph;
const out = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-sampler-sweep-'));
const models = new ModelManager();

async function runSetting(s: Setting): Promise<SeedRun[]> {
  const runs: SeedRun[] = [];
  for (const seed of seeds) {
    const r = await executeGraph(graphFor(base, s, seed), { roots: { models: path.join(root, 'models'), input: out, output: out }, models });
    const image = r.outputs.find((o) => o.node === 'save_fused' && o.kind === 'image');
    const latent = r.outputs.find((o) => o.node === 'save_latent');
    if (!image || !latent) throw new Error(`${s.label}: the graph wrote no fused image or latent`);
    runs.push({
      measure: await measureShape(await readFile(image.path), 'red'),
      latent: decodeNpy(await readFile(latent.path)).data,
      calls: Object.values(r.unetCalls).reduce((a, b) => a + b, 0),
    });
  }
  return runs;
}

function rms(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s / a.length);
}

const range = (xs: number[]): string => `${Math.min(...xs).toFixed(3)}–${Math.max(...xs).toFixed(3)}`;

function row(label: string, runs: SeedRun[], converged: SeedRun[], ddim50Calls: number): string {
  const m = runs.map((r) => r.measure);
  const stars = m.filter((x) => x.starLike).length;
  const style = m.filter((x) => x.backgroundRoughness >= PHOTO_MIN_ROUGHNESS && x.outlineContrast < PHOTO_MAX_OUTLINE).length;
  const calls = runs[0]!.calls;
  const dist = runs.map((r, i) => rms(r.latent, converged[i]!.latent));
  const mean = dist.reduce((a, b) => a + b, 0) / dist.length;
  return (
    `| ${label} | ${stars}/${runs.length} | ${style}/${runs.length} | ${range(m.map((x) => x.backgroundRoughness))} | ` +
    `${range(m.map((x) => x.outlineContrast))} | ${calls} (${((100 * calls) / ddim50Calls).toFixed(0)} %) | ${mean.toFixed(4)} |`
  );
}

try {
  const t0 = performance.now();
  const converged = await runSetting(ddim(250));
  const ddim50 = await runSetting(ddim(50));
  const ddim50Calls = ddim50[0]!.calls;
  console.log(`seeds ${seeds.join(', ')}; distance: RMS of the final latent against DDIM 250 of the same seed\n`);
  console.log('| setting | star-like | photo style | background roughness | outline contrast | UNet calls (of DDIM 50) | RMS to DDIM 250 |');
  console.log('|---|---|---|---|---|---|---|');
  console.log(row('ddim 50 (DDIMStep)', ddim50, converged, ddim50Calls));
  console.log(row('ddim 100 (DDIMStep)', await runSetting(ddim(100)), converged, ddim50Calls));
  const settings: Setting[] = [];
  const steps = values.steps.split(',').map(Number);
  for (const name of values.samplers.split(',')) {
    for (const schedule of values.schedules.split(',')) {
      if (name === 'ddim' && schedule !== 'default') continue;
      for (const n of steps) settings.push(sampler(name, schedule, n));
    }
  }
  for (const pair of values.extra ? values.extra.split(',') : []) {
    const [name, schedule] = pair.split(':') as [string, string];
    if (!values.schedules.split(',').includes(schedule)) for (const n of steps) settings.push(sampler(name, schedule, n));
  }
  for (const s of settings) console.log(row(s.label, await runSetting(s), converged, ddim50Calls));
  console.error(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
} finally {
  await models.dispose();
  await rm(out, { recursive: true, force: true });
}
