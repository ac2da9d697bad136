import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelArchitecture, Prediction, VaeArchitecture } from '../checkpoint/architecture.js';
import { buildTextEncoderGraph } from '../checkpoint/build/text-encoder-graph.js';
import { buildUnetGraph } from '../checkpoint/build/unet-graph.js';
import { buildVaeDecoderGraph, buildVaeEncoderGraph } from '../checkpoint/build/vae-graph.js';
import { componentWeights, describeCheckpoint, describeVaeFile, type CheckpointDescription } from '../checkpoint/describe.js';
import { openTensorFile } from '../checkpoint/formats/open-tensor-file.js';
import { CheckpointError } from '../checkpoint/tensor-file.js';
import type { GraphPrecision, Weights } from '../checkpoint/weights.js';

/** The openai CLIP BPE vocabulary (MIT) that ships with FuseGraph: a checkpoint carries no tokenizer. */
export const BUNDLED_CLIP_TOKENIZER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'clip-tokenizer');
const TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json'];

/**
 * The scheduler SD-1.x and SD-2.x were trained with (the same config their diffusers folders ship): every
 * sampler and `schedule` reads it as it reads an exported folder's.
 */
export function familySchedulerConfig(prediction: Prediction): Record<string, unknown> {
  return {
    _class_name: 'PNDMScheduler',
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
    num_train_timesteps: 1000,
    set_alpha_to_one: false,
    skip_prk_steps: true,
    steps_offset: 1,
    trained_betas: null,
    clip_sample: false,
    prediction_type: prediction,
  };
}

export interface CheckpointFolderOptions {
  /** The EMA UNet weights (`model_ema.*`) instead of `model.diffusion_model.*`. */
  readonly ema: boolean;
  /** A standalone VAE file whose decoder (and encoder) replace the checkpoint's. */
  readonly vaeFile: string | null;
  readonly precision: GraphPrecision;
  /** Overrides the prediction `auto` decides from the file. */
  readonly prediction?: Prediction;
  readonly onProgress?: (part: string, done: number, total: number) => void;
}

/** What a built folder was made from, written beside its parts as fusegraph-checkpoint.json. */
export interface CheckpointFolderManifest {
  readonly source: string;
  readonly family: string;
  readonly prediction: Prediction;
  readonly predictionReason: string;
  readonly ema: boolean;
  readonly vae: string | null;
  readonly precision: GraphPrecision;
  readonly architecture: ModelArchitecture;
}

export const CHECKPOINT_MANIFEST = 'fusegraph-checkpoint.json';

async function sidecarYaml(file: string): Promise<string | null> {
  // A1111's convention: the config of `model.safetensors` is `model.yaml` beside it.
  const yaml = file.replace(/\.[^./]+$/, '') + '.yaml';
  return existsSync(yaml) ? readFile(yaml, 'utf8') : null;
}

/** Describes a checkpoint file (what `fusegraph inspect` prints and what admission checks). */
export async function describeCheckpointFile(file: string): Promise<CheckpointDescription> {
  const tensors = await openTensorFile(file);
  try {
    return await describeCheckpoint(tensors, { sidecarYaml: await sidecarYaml(file) });
  } finally {
    await tensors.close();
  }
}

/**
 * Writes a standard diffusers/optimum ONNX folder (text_encoder/, unet/, vae_decoder/, vae_encoder/, tokenizer/,
 * scheduler/) from an SD-1.x/2.x checkpoint: the folder FuseGraph and other ONNX tools load. Weights stream from
 * the file into each part's weights.pb one tensor at a time.
 */
export async function writeCheckpointFolder(file: string, outDir: string, opts: CheckpointFolderOptions): Promise<CheckpointFolderManifest> {
  const tensors = await openTensorFile(file);
  const vaeTensors = opts.vaeFile ? await openTensorFile(opts.vaeFile) : null;
  try {
    const desc = await describeCheckpoint(tensors, { sidecarYaml: await sidecarYaml(file) });
    if (desc.unsupported !== null || desc.architecture === null) throw new CheckpointError(`${path.basename(file)}: ${desc.unsupported ?? 'not a Stable Diffusion checkpoint'}`, file);
    if (opts.ema && !desc.hasEma) throw new CheckpointError(`${path.basename(file)} has no EMA weights (model_ema.*): set ema to false`, file);
    const arch = desc.architecture;
    let vaeArch: VaeArchitecture = arch.vae;
    let vaeWeights: Weights = componentWeights(tensors, desc, 'vae', { ema: false });
    if (vaeTensors) {
      const vae = describeVaeFile(vaeTensors);
      vaeArch = vae.architecture;
      vaeWeights = vae.weights;
    }
    const prediction = opts.prediction ?? desc.prediction.value;
    const { precision } = opts;
    const progress = (part: string) => (done: number, total: number) => opts.onProgress?.(part, done, total);

    await mkdir(outDir, { recursive: true });
    await buildTextEncoderGraph(componentWeights(tensors, desc, 'textEncoder', { ema: false }), arch.textEncoder, path.join(outDir, 'text_encoder'), { precision, extraEmbeddings: true });
    progress('text_encoder')(1, 1);
    await buildUnetGraph(componentWeights(tensors, desc, 'unet', { ema: opts.ema }), arch.unet, path.join(outDir, 'unet'), { precision, onProgress: progress('unet') });
    await writeVaeParts(vaeWeights, vaeArch, outDir);
    progress('vae_decoder')(1, 1);

    await writeTokenizer(path.join(outDir, 'tokenizer'), arch.textEncoder.kind === 'open-clip');
    await writeJson(path.join(outDir, 'scheduler', 'scheduler_config.json'), familySchedulerConfig(prediction));
    const levels = arch.unet.channelMult.map((m) => m * arch.unet.modelChannels);
    await writeJson(path.join(outDir, 'unet', 'config.json'), {
      _class_name: 'UNet2DConditionModel',
      in_channels: arch.unet.inChannels,
      out_channels: arch.unet.outChannels,
      block_out_channels: levels,
      cross_attention_dim: arch.unet.contextDim,
    });
    await writeJson(path.join(outDir, 'model_index.json'), {
      _class_name: 'OnnxStableDiffusionPipeline',
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['diffusers', 'OnnxRuntimeModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'OnnxRuntimeModel'],
      vae_decoder: ['diffusers', 'OnnxRuntimeModel'],
      vae_encoder: vaeArch.hasEncoder ? ['diffusers', 'OnnxRuntimeModel'] : [null, null],
    });
    const manifest: CheckpointFolderManifest = {
      source: path.basename(file),
      family: prediction === 'v_prediction' && desc.family !== 'sd1' ? 'sd2-v' : (desc.family ?? 'sd1'),
      prediction,
      predictionReason: opts.prediction ? 'set by LoadModel.prediction' : desc.prediction.reason,
      ema: opts.ema,
      vae: opts.vaeFile ? path.basename(opts.vaeFile) : null,
      precision,
      architecture: { ...arch, vae: vaeArch },
    };
    await writeJson(path.join(outDir, CHECKPOINT_MANIFEST), manifest);
    return manifest;
  } finally {
    await tensors.close();
    await vaeTensors?.close();
  }
}

/** A standalone VAE file's decoder (and encoder) as vae_decoder/ and vae_encoder/ folders: LoadModel's `vae`. */
export async function writeVaeFolder(file: string, outDir: string): Promise<void> {
  const tensors = await openTensorFile(file);
  try {
    const { architecture: arch, weights } = describeVaeFile(tensors);
    await writeVaeParts(weights, arch, outDir);
    await writeJson(path.join(outDir, CHECKPOINT_MANIFEST), { source: path.basename(file), vae: arch });
  } finally {
    await tensors.close();
  }
}

async function writeVaeParts(weights: Weights, arch: VaeArchitecture, outDir: string): Promise<void> {
  // The VAE stays float32: fp16 SD VAEs overflow to NaN in the decoder's last blocks (diffusers upcasts it too).
  await buildVaeDecoderGraph(weights, arch, path.join(outDir, 'vae_decoder'), { precision: 'float32' });
  if (arch.hasEncoder) await buildVaeEncoderGraph(weights, arch, path.join(outDir, 'vae_encoder'), { precision: 'float32' });
  const config = {
    _class_name: 'AutoencoderKL',
    latent_channels: arch.zChannels,
    out_channels: arch.outChannels,
    block_out_channels: arch.chMult.map((m) => m * arch.ch),
    scaling_factor: arch.scalingFactor,
  };
  await writeJson(path.join(outDir, 'vae_decoder', 'config.json'), config);
  if (arch.hasEncoder) await writeJson(path.join(outDir, 'vae_encoder', 'config.json'), config);
}

/** The bundled CLIP vocabulary; SD-2's OpenCLIP tokenizer pads with "!" (id 0) instead of the end token. */
async function writeTokenizer(dir: string, openClip: boolean): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const f of TOKENIZER_FILES) await copyFile(path.join(BUNDLED_CLIP_TOKENIZER, f), path.join(dir, f));
  if (!openClip) return;
  for (const f of ['special_tokens_map.json', 'tokenizer_config.json']) {
    const json = JSON.parse(await readFile(path.join(dir, f), 'utf8')) as Record<string, unknown>;
    await writeJson(path.join(dir, f), { ...json, pad_token: '!' });
  }
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(value, null, 2) + '\n');
}
