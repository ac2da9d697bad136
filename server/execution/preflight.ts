import type { GraphIssue } from '../../nodes/graph-format.js';
import { own } from '../../nodes/graph-format.js';
import type { RunPlan } from '../engine/plan.js';
import { redactPaths } from '../engine/redact.js';
import { implementationOf } from '../impls/index.js';
import type { AdmitFacts, AdmittedModel } from '../impls/types.js';
import type { ActivationStore } from '../sd/activation-store.js';
import path from 'node:path';
import type { CheckpointDescription } from '../checkpoint/describe.js';
import { describeCheckpointFile, familySchedulerConfig } from '../sd/checkpoint-folder.js';
import { checkLora } from '../sd/lora-folder.js';
import { inspectModelFolder, readJsonIfExists, vaeFactorFromConfig } from '../sd/model-folder.js';
import { VaeSourceError, pathKind, sourceKey, type ModelSource } from '../sd/model-source.js';
import { parseSchedulerConfig } from '../sd/scheduler.js';
import { formatBytes } from '../engine/format-bytes.js';
import { decodeBytes, memoryFacts, unetCallBytes, type ModelMemoryFacts } from './memory-model.js';

export interface PreflightOptions {
  readonly roots: { readonly models: string };
  /** Refuse a graph whose estimated peak memory exceeds this many bytes; no check when absent. */
  readonly maxRunMemory?: number;
  /** Measured UNet activations (activation-profiler.ts); a UNet not in it yet is estimated from its config. */
  readonly activations?: Pick<ActivationStore, 'lookup'>;
  /** What a LoadModel's `auto` provider stands for where the run executes (a worker's --provider). Default `auto`. */
  readonly provider?: string;
}

/** The largest latent a run makes: the memory estimate's size. */
interface Peak {
  readonly node: string;
  readonly field: string;
  readonly batch: number;
  readonly latentPixels: number;
  readonly imagePixels: number;
}

/** What admission reads of a model folder: the hooks' view, plus the memory model's facts. */
interface ModelFacts extends AdmittedModel {
  readonly memory: ModelMemoryFacts;
}

async function modelFacts(source: ModelSource, options: PreflightOptions, describe: (file: string) => Promise<CheckpointDescription>): Promise<ModelFacts> {
  try {
    const own = { ...(source.kind === 'checkpoint' ? await checkpointFacts(source.path, describe, source.prediction) : await folderFacts(source.path, options)), source };
    if (source.vae === null) return own;
    let vae;
    try {
      vae = await vaeFacts(source.vae, describe);
    } catch (err) {
      throw new VaeSourceError((err as Error).message, { cause: err });
    }
    return { ...own, vaeFactor: vae.vaeFactor, memory: { ...own.memory, vaeWidth: vae.vaeWidth } };
  } catch (err) {
    // Clients must not learn the server's layout: files are named relative to the models root.
    const message = redactPaths((err as Error).message, { models: options.roots.models });
    throw err instanceof VaeSourceError ? new VaeSourceError(message, { cause: err }) : new Error(message, { cause: err });
  }
}

async function folderFacts(dir: string, options: PreflightOptions): Promise<ModelFacts> {
  const folder = await inspectModelFolder(dir);
  const { schedulerJson } = folder;
  let scheduler = null;
  try {
    scheduler = parseSchedulerConfig(schedulerJson);
  } catch {
    // reported by LoadModel at run time
  }
  const levels = folder.unetConfig?.block_out_channels;
  const textConfig = await readJsonIfExists(path.join(dir, 'text_encoder', 'config.json')).catch(() => null);
  const width = textConfig?.hidden_size ?? folder.unetConfig?.cross_attention_dim;
  return {
    textWidth: typeof width === 'number' ? width : null,
    vaeFactor: vaeFactorFromConfig(folder.vaeConfig),
    unetFactor: Array.isArray(levels) && levels.length > 0 ? 2 ** (levels.length - 1) : null,
    scheduler,
    schedulerJson,
    memory: memoryFacts(folder, (await options.activations?.lookup(folder.parts.unet).catch(() => null)) ?? null),
  };
}

/** A checkpoint's facts from its tensors' shapes: nothing is built to admit it (a build takes minutes). */
async function checkpointFacts(file: string, describe: (file: string) => Promise<CheckpointDescription>, prediction: ModelSource['prediction']): Promise<ModelFacts> {
  const d = await describe(file);
  const arch = d.architecture;
  if (!arch || d.unsupported !== null) throw new Error(d.unsupported ?? `${file}: not a Stable Diffusion checkpoint`);
  const { unet, vae } = arch;
  // The samplers see ε whatever the model predicts (PredictNoise converts), as SdModel.load arranges for loaded models.
  const schedulerJson = { ...familySchedulerConfig(prediction === 'auto' ? d.prediction.value : prediction), prediction_type: 'epsilon' };
  const heads = unet.numHeads ?? Math.max(1, unet.modelChannels / (unet.headChannels ?? unet.modelChannels));
  return {
    vaeFactor: 2 ** (vae.chMult.length - 1),
    unetFactor: 2 ** (unet.channelMult.length - 1),
    textWidth: arch.textEncoder.width,
    scheduler: parseSchedulerConfig(schedulerJson),
    schedulerJson,
    memory: {
      unetWidth: unet.modelChannels * unet.channelMult[0]!,
      selfAttentionHeads: unet.attentionLevels[0] ? heads : 0,
      vaeWidth: vae.ch * vae.chMult[0]!,
      measuredUnet: null,
    },
  };
}

/** The VAE a LoadModel's `vae` names: a file (bare, prefixed or diffusers keys) or an ONNX folder. */
async function vaeFacts(vae: string, describe: (file: string) => Promise<CheckpointDescription>): Promise<{ vaeFactor: number | null; vaeWidth: number }> {
  if ((await pathKind(vae)) === 'folder') {
    const dir = (await pathKind(path.join(vae, 'vae_decoder'))) === 'folder' ? path.join(vae, 'vae_decoder') : vae;
    if ((await pathKind(path.join(dir, 'model.onnx'))) !== 'file') throw new Error(`VAE folder ${vae} has no vae_decoder/model.onnx`);
    const config = await readJsonIfExists(path.join(dir, 'config.json'));
    return { vaeFactor: vaeFactorFromConfig(config), vaeWidth: memoryFacts({ unetConfig: null, vaeConfig: config }).vaeWidth };
  }
  const d = await describe(vae);
  const arch = d.standaloneVae ?? d.architecture?.vae;
  if (!arch) throw new Error(`VAE ${vae} is not a VAE: ${d.unsupported ?? 'no AutoencoderKL weights'}`);
  return { vaeFactor: 2 ** (arch.chMult.length - 1), vaeWidth: arch.ch * arch.chMult[0]! };
}

/**
 * Admission: the checks that need the model folders' metadata, made before a run is queued (and by `fusegraph
 * validate` and `run`) so that they fail with the node and field instead of deep inside ONNX Runtime. Each node's
 * implementation says what to check in its `admit` hook (model folders, image sizes against the VAE and UNet factors,
 * steps against the scheduler), run in plan order; then the run's estimated peak memory, from what the hooks declared,
 * is checked against the budget. Nothing here knows a node type by name.
 */
export async function preflightGraph(plan: RunPlan, options: PreflightOptions): Promise<GraphIssue[]> {
  const { graph } = plan;
  const issues: GraphIssue[] = [];
  const folders = new Map<string, Promise<ModelFacts>>();
  const descriptions = new Map<string, Promise<CheckpointDescription>>();
  const describe = (file: string): Promise<CheckpointDescription> => {
    let pending = descriptions.get(file);
    if (!pending) {
      pending = describeCheckpointFile(file).catch((err: unknown) => {
        throw new Error(redactPaths((err as Error).message, { models: options.roots.models }), { cause: err });
      });
      descriptions.set(file, pending);
    }
    return pending;
  };
  /** The model each node's MODEL output carries, as its loader admitted it (null: unreadable, already reported). */
  const provided = new Map<string, ModelFacts | null>();
  const unetModels = new Set<ModelFacts>();
  const vaeModels = new Set<ModelFacts>();
  let largest: Peak | null = null;

  for (const id of plan.order) {
    const node = graph.nodes[id]!;
    const impl = implementationOf(node.type);
    if (!impl?.admit) continue;
    const facts: AdmitFacts = {
      node: id,
      roots: options.roots,
      provider: options.provider ?? 'auto',
      inspectModel: (source) => {
        const key = sourceKey(source, '');
        let pending = folders.get(key);
        if (!pending) folders.set(key, (pending = modelFacts(source, options, describe)));
        return pending;
      },
      describeCheckpoint: describe,
      checkLora: (checkpointFile, loraFile) => checkLora(checkpointFile, loraFile).catch((err: unknown) => {
        throw new Error(redactPaths((err as Error).message, { models: options.roots.models }), { cause: err });
      }),
      provideModel: (model) => provided.set(id, model as ModelFacts),
      model: (input) => {
        const link = own(node.inputs, input);
        return link ? provided.get(link.node) ?? null : null;
      },
      usesLatent: (latent, field) => {
        if (!largest || latent.batch * latent.latentPixels > largest.batch * largest.latentPixels) largest = { node: id, field, ...latent };
      },
      usesUnet: (model) => unetModels.add(model as ModelFacts),
      usesVae: (model) => vaeModels.add(model as ModelFacts),
      report: (issue) => issues.push({ node: id, ...issue }),
    };
    await impl.admit(plan.params[id] as never, facts);
  }

  const peak = largest as Peak | null; // assigned inside the closures above, which narrowing does not follow
  if (options.maxRunMemory !== undefined && peak) {
    // Every model a noise prediction uses may be mid-call at once (one worker each); decodes run after sampling.
    const { batch, latentPixels, imagePixels } = peak;
    const sampling = [...unetModels].reduce((sum, m) => sum + unetCallBytes(m.memory, 2 * batch, latentPixels), 0);
    const decoding = Math.max(0, ...[...vaeModels].map((m) => decodeBytes(m.memory, batch, imagePixels)));
    const need = Math.max(sampling, decoding);
    if (need > options.maxRunMemory) {
      const measured = sampling >= decoding && [...unetModels].every((m) => m.memory.measuredUnet) ? ' (UNet activations as measured on the model)' : '';
      issues.push({
        node: peak.node, field: peak.field, code: 'too_large',
        message: `this latent (width × height × batch) needs about ${formatBytes(need)} at its peak${measured}, more than the ` +
          `per-run budget of ${formatBytes(options.maxRunMemory)} (--max-run-memory); use a smaller size or batch`,
        expected: `≤ ${formatBytes(options.maxRunMemory)}`, actual: formatBytes(need),
      });
    }
  }
  return issues;
}
