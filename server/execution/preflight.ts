import { readFile } from 'node:fs/promises';
import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import { own } from '../../nodes/graph-format.js';
import { resolveInRoot } from '../impls/paths.js';
import type { ActivationStore } from '../sd/activation-store.js';
import { inspectModelFolder, vaeFactorFromConfig } from '../sd/model-folder.js';
import type { SchedulerConfig } from '../sd/scheduler.js';
import { DDIMSchedule, parseSchedulerConfig } from '../sd/scheduler.js';
import { decodeBytes, formatBytes, memoryFacts, unetCallBytes, type ModelMemoryFacts } from './memory-model.js';
import { resolveParams } from '../engine/plan.js';

export interface PreflightOptions {
  readonly roots: { readonly models: string };
  /** Refuse a graph whose estimated peak memory exceeds this many bytes; no check when absent. */
  readonly maxRunMemory?: number;
  /** Measured UNet activations (activation-profiler.ts); a UNet not in it yet is estimated from its config. */
  readonly activations?: Pick<ActivationStore, 'lookup'>;
}

interface ModelFacts {
  readonly vaeFactor: number | null;
  /** Latent sides must be multiples of this: 2^(UNet levels − 1), as an ONNX export traced at such a size needs. */
  readonly unetFactor: number | null;
  readonly scheduler: SchedulerConfig | null;
  readonly memory: ModelMemoryFacts;
}

async function modelFacts(dir: string, activations: PreflightOptions['activations']): Promise<ModelFacts | null> {
  let folder;
  try {
    folder = await inspectModelFolder(dir);
  } catch {
    return null; // LoadModel names the problem when the run starts, with its field
  }
  let scheduler: SchedulerConfig | null = null;
  try {
    scheduler = parseSchedulerConfig(JSON.parse(await readFile(folder.schedulerConfigFile, 'utf8')));
  } catch {
    // reported by LoadModel at run time
  }
  const levels = folder.unetConfig?.block_out_channels;
  return {
    vaeFactor: vaeFactorFromConfig(folder.vaeConfig),
    unetFactor: Array.isArray(levels) && levels.length > 0 ? 2 ** (levels.length - 1) : null,
    scheduler,
    memory: memoryFacts(folder, (await activations?.lookup(folder.parts.unet).catch(() => null)) ?? null),
  };
}

/**
 * The checks that need the model folders' metadata, done before a run is queued so that they fail with the node
 * and field instead of deep inside ONNX Runtime: image sizes against the VAE and UNet factors, steps against
 * the scheduler, and the run's estimated peak memory against the budget. The graph must be valid already.
 */
export async function preflightGraph(graph: Graph, options: PreflightOptions): Promise<GraphIssue[]> {
  const params = resolveParams(graph);
  const facts = new Map<string, ModelFacts | null>();
  for (const [id, node] of Object.entries(graph.nodes)) {
    if (node.type !== 'LoadModel') continue;
    const dir = resolveInRoot(options.roots.models, String(params[id]!.path));
    facts.set(id, dir ? await modelFacts(dir, options.activations) : null);
  }
  const modelOf = (id: string): ModelFacts | null => {
    const link = own(own(graph.nodes, id)?.inputs, 'model');
    return link ? facts.get(link.node) ?? null : null;
  };

  const issues: GraphIssue[] = [];
  let largest: { node: string; batch: number; latentPixels: number; imagePixels: number } | null = null;
  for (const [id, node] of Object.entries(graph.nodes)) {
    const p = params[id]!;
    const m = modelOf(id);
    if (node.type === 'DDIMStep' && m?.scheduler) {
      try {
        new DDIMSchedule(m.scheduler, Number(p.steps));
      } catch (err) {
        issues.push({
          node: id, field: 'params.steps', code: 'param_range',
          message: `the model's scheduler cannot take ${String(p.steps)} steps: ${(err as Error).message}`,
          expected: `at most ${maxSteps(m.scheduler)}`, actual: String(p.steps),
        });
      }
    }
    if (node.type !== 'NoiseLatent' || !m) continue;
    const width = Number(p.width);
    const height = Number(p.height);
    const batch = Number(p.batch);
    const f = m.vaeFactor ?? 1;
    let sizeOk = true;
    for (const [field, side] of [['width', width], ['height', height]] as const) {
      const step = f * (m.unetFactor ?? 1);
      if (side % step === 0) continue;
      sizeOk = false;
      const why = side % f !== 0
        ? `is not a multiple of the model's VAE factor ${f}`
        : `gives a latent side of ${side / f}, which the UNet (downsampling by ${m.unetFactor}) cannot divide evenly`;
      issues.push({ node: id, field: `params.${field}`, code: 'param_range', message: `${field} ${side} ${why}`, expected: `a multiple of ${step}`, actual: String(side) });
    }
    const latentPixels = (width / f) * (height / f);
    if (sizeOk && (!largest || batch * latentPixels > largest.batch * largest.latentPixels)) {
      largest = { node: id, batch, latentPixels, imagePixels: width * height };
    }
  }

  if (options.maxRunMemory !== undefined && largest) {
    // Every model a PredictNoise uses may be mid-call at once (one worker each); decodes run after sampling.
    const unetModels = new Set<ModelFacts>();
    const vaeModels = new Set<ModelFacts>();
    for (const [id, node] of Object.entries(graph.nodes)) {
      const m = modelOf(id);
      if (m && node.type === 'PredictNoise') unetModels.add(m);
      if (m && node.type === 'Decode') vaeModels.add(m);
    }
    const { batch, latentPixels, imagePixels } = largest;
    const sampling = [...unetModels].reduce((sum, m) => sum + unetCallBytes(m.memory, 2 * batch, latentPixels), 0);
    const decoding = Math.max(0, ...[...vaeModels].map((m) => decodeBytes(m.memory, batch, imagePixels)));
    const need = Math.max(sampling, decoding);
    if (need > options.maxRunMemory) {
      const measured = sampling >= decoding && [...unetModels].every((m) => m.memory.measuredUnet) ? ' (UNet activations as measured on the model)' : '';
      issues.push({
        node: largest.node, field: 'params.width', code: 'too_large',
        message: `this latent (width × height × batch) needs about ${formatBytes(need)} at its peak${measured}, more than the ` +
          `per-run budget of ${formatBytes(options.maxRunMemory)} (--max-run-memory); use a smaller size or batch`,
        expected: `≤ ${formatBytes(options.maxRunMemory)}`, actual: formatBytes(need),
      });
    }
  }
  return issues;
}

/** The most DDIM steps a scheduler config accepts (what DDIMSchedule itself would refuse beyond). */
function maxSteps(config: SchedulerConfig): number {
  let lo = 1;
  let hi = config.num_train_timesteps;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    try {
      new DDIMSchedule(config, mid);
      lo = mid;
    } catch {
      hi = mid - 1;
    }
  }
  return lo;
}
