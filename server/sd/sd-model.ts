import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { fromFloat16Array, toFloat16Array } from '../runtime/float16.js';
import type { SessionIsolation } from '../runtime/session-channel.js';
import { SessionHost } from '../runtime/session-host.js';
import type { PartMeta, Provider, ValueMeta, WireTensor } from '../runtime/wire.js';
import type { ModelFolder, PartName } from './model-folder.js';
import { ModelFolderError, vaeFactorFromConfig } from './model-folder.js';
import type { SchedulerConfig } from './scheduler.js';
import { parseSchedulerConfig } from './scheduler.js';
import { folderSource, type ModelSource } from './model-source.js';
import { ClipTokenizer } from './tokenizer.js';

export interface Tensor32 {
  readonly data: Float32Array;
  readonly shape: readonly number[];
}

export interface ModelInfo {
  readonly latentChannels: number;
  readonly vaeFactor: number;
  readonly scalingFactor: number;
  readonly hiddenSize: number | null;
  readonly dtypes: Readonly<Record<string, string>>;
  readonly parts: Readonly<Record<PartName, PartMeta>>;
}

/** The text encoder's CLIP-skip-2 output and its textual-inversion input (server/checkpoint/build/text-encoder-graph.ts). */
const PENULTIMATE_OUTPUT = 'hidden_states_penultimate';
const EXTRA_EMBEDDINGS_INPUT = 'extra_embeddings';

function findInput(meta: PartMeta, name: string, file: string): ValueMeta {
  const m = meta.inputs.find((i) => i.name === name);
  if (!m) throw new ModelFolderError(`${file}: expected an input named "${name}", found ${meta.inputs.map((i) => i.name).join(', ')}`, file);
  return m;
}

function numericDim(meta: ValueMeta | undefined, axis: number): number | null {
  const d = meta?.shape[axis];
  return typeof d === 'number' && d > 0 ? d : null;
}

function numberField(obj: Readonly<Record<string, unknown>> | null, key: string): number | null {
  const v = obj?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/**
 * A loaded Stable Diffusion model folder: its tokenizer, scheduler config and ONNX sessions (in a worker). All dtypes
 * and ranks come from the sessions' metadata, so every exporter variant (int32/int64 ids, float/int64/float16 and
 * scalar/[batch] timesteps, fp16 models) is fed as it declares.
 */
export class SdModel {
  /** UNet calls made so far; runs report the difference. */
  unetCalls = 0;
  private hashes: Promise<Record<string, string>> | null = null;

  private constructor(
    readonly key: string,
    readonly folder: ModelFolder,
    readonly provider: Provider,
    readonly providerFallbacks: readonly { provider: Provider; error: string }[],
    /** The text conditioning stays in GPU memory across UNet calls (WebGPU), instead of being copied on each. */
    readonly conditioningOnDevice: boolean,
    readonly tokenizer: ClipTokenizer,
    readonly schedulerConfig: SchedulerConfig,
    /** scheduler_config.json as parsed JSON: each non-DDIM sampler reads it with its own class defaults. */
    readonly schedulerJson: unknown,
    readonly info: ModelInfo,
    /**
     * What the UNet predicts. PredictNoise turns a v-prediction into ε before guidance, so saliency, blending and
     * every sampler see one parameterisation; `schedulerConfig` therefore always says epsilon.
     */
    readonly prediction: 'epsilon' | 'v_prediction' | 'sample',
    /** The checkpoint file this model was built from (its folder is then a cached build), or null for a folder. */
    readonly checkpoint: string | null,
    /** What it was loaded from (a plain folder when the loader did not say) and the provider choice it was loaded with. */
    readonly source: ModelSource,
    readonly providerChoice: string,
    private readonly host: SessionHost,
    private readonly onDispose?: () => void,
  ) {}

  static async load(
    key: string,
    folder: ModelFolder,
    providers: readonly Provider[],
    threads: number,
    opts: {
      isolation?: SessionIsolation;
      prediction?: 'epsilon' | 'v_prediction';
      checkpoint?: string;
      /** What the model was loaded from and with which provider choice: LoadLoRA loads the same with LoRAs added. */
      source?: ModelSource;
      providerChoice?: string;
      /** Called once the model's sessions are closed (a cached build is no longer in use). */
      onDispose?: () => void;
    } = {},
  ): Promise<SdModel> {
    const { isolation, prediction } = opts;
    const host = new SessionHost(isolation);
    // Sessions load in the worker while this thread reads the tokenizer and scheduler files.
    const opening = host.open({ ...folder.parts }, providers, threads);
    try {
      const [tokenizer, scheduler, opened] = await Promise.all([
        ClipTokenizer.fromFolder(folder.tokenizerDir),
        readSchedulerConfig(folder),
        opening,
      ]);
      const parts = opened.parts as Record<PartName, PartMeta>;
      const info = SdModel.describe(folder, parts);
      const declared = scheduler.config.prediction_type;
      const predicts = prediction ?? declared;
      const asEpsilon = { config: { ...scheduler.config, prediction_type: 'epsilon' as const }, json: withEpsilon(scheduler.json) };
      return new SdModel(
        key, folder, opened.provider, opened.fallbacks, opened.keepsOnDevice, tokenizer, asEpsilon.config, asEpsilon.json, info, predicts, opts.checkpoint ?? null,
        opts.source ?? folderSource(folder.dir), opts.providerChoice ?? 'auto', host, opts.onDispose,
      );
    } catch (err) {
      await opening.catch(() => undefined);
      await host.close();
      const e = err as Error & { file?: string };
      if (e instanceof ModelFolderError) throw e;
      throw new ModelFolderError(`cannot load model: ${e.message}`, e.file ?? folder.dir);
    }
  }

  private static describe(folder: ModelFolder, parts: Record<PartName, PartMeta>): ModelInfo {
    const { unet, vaeDecoder, textEncoder } = parts;
    const sample = findInput(unet, 'sample', folder.parts.unet);
    findInput(unet, 'timestep', folder.parts.unet);
    const ehs = findInput(unet, 'encoder_hidden_states', folder.parts.unet);
    findInput(textEncoder, 'input_ids', folder.parts.textEncoder);
    const latentIn = findInput(vaeDecoder, 'latent_sample', folder.parts.vaeDecoder);
    const latentChannels =
      numericDim(sample, 1) ?? numberField(folder.unetConfig, 'in_channels') ?? numericDim(latentIn, 1) ?? numberField(folder.vaeConfig, 'latent_channels') ?? 4;
    const vaeFactor = vaeFactorFromConfig(folder.vaeConfig) ?? SdModel.factorFromShapes(vaeDecoder) ?? 8;
    const dtypes: Record<string, string> = {};
    for (const [part, meta] of Object.entries(parts)) for (const i of meta.inputs) dtypes[`${part}.${i.name}`] = i.type;
    return {
      latentChannels,
      vaeFactor,
      scalingFactor: numberField(folder.vaeConfig, 'scaling_factor') ?? 0.18215,
      hiddenSize: numericDim(ehs, 2),
      dtypes,
      parts,
    };
  }

  private static factorFromShapes(vae: PartMeta): number | null {
    const h = numericDim(vae.inputs.find((i) => i.name === 'latent_sample'), 2);
    const H = numericDim(vae.outputs[0], 2);
    return h && H ? H / h : null;
  }

  get name(): string {
    return path.basename(this.folder.dir);
  }

  /**
   * What this text encoder offers beyond `last_hidden_state`: `hidden_states_penultimate` (CLIP skip 2, FuseGraph's
   * checkpoint builds) and an `extra_embeddings` input (textual inversion, see text-encoder-graph.ts), by the
   * session's metadata.
   */
  get textEncoderFeatures(): { readonly penultimate: boolean; readonly extraEmbeddings: boolean } {
    const te = this.info.parts.textEncoder;
    return {
      penultimate: te.outputs.some((o) => o.name === PENULTIMATE_OUTPUT),
      extraEmbeddings: te.inputs.some((i) => i.name === EXTRA_EMBEDDINGS_INPUT),
    };
  }

  /**
   * Encodes token id rows ([rows][77]) → [rows, 77, hidden] float32: `last_hidden_state` (the default layer), or with
   * `layer: 'penultimate'` `hidden_states_penultimate`. Ids −1−k stand for row k of `extraEmbeddings` [E, hidden],
   * for a text encoder with that input (textEncoderFeatures); it is fed empty when not given.
   */
  async encodeText(
    idRows: readonly (readonly number[])[],
    opts: { readonly layer?: 'last' | 'penultimate'; readonly extraEmbeddings?: Tensor32 } = {},
  ): Promise<Tensor32> {
    const te = this.info.parts.textEncoder;
    const meta = findInput(te, 'input_ids', this.folder.parts.textEncoder);
    const len = idRows[0]?.length ?? 0;
    const flat = idRows.flat();
    const ids: WireTensor =
      meta.type === 'int64'
        ? { type: 'int64', dims: [idRows.length, len], data: BigInt64Array.from(flat, (v) => BigInt(v)) }
        : { type: 'int32', dims: [idRows.length, len], data: Int32Array.from(flat) };
    const feeds: Record<string, WireTensor> = { input_ids: ids };
    const extraMeta = te.inputs.find((i) => i.name === EXTRA_EMBEDDINGS_INPUT);
    if (extraMeta) {
      const width = numericDim(extraMeta, 1) ?? opts.extraEmbeddings?.shape[1] ?? this.info.hiddenSize ?? 0;
      feeds[EXTRA_EMBEDDINGS_INPUT] = opts.extraEmbeddings
        ? { type: 'float32', dims: opts.extraEmbeddings.shape, data: opts.extraEmbeddings.data }
        : { type: 'float32', dims: [0, width], data: new Float32Array(0) };
    } else if (opts.extraEmbeddings && opts.extraEmbeddings.shape[0]! > 0) {
      throw new Error(`${this.folder.parts.textEncoder}: this text encoder has no "${EXTRA_EMBEDDINGS_INPUT}" input, so it cannot take textual-inversion embeddings`);
    }
    let outName: string;
    if (opts.layer === 'penultimate') {
      if (!te.outputs.some((o) => o.name === PENULTIMATE_OUTPUT)) {
        throw new Error(`${this.folder.parts.textEncoder}: this text encoder has no "${PENULTIMATE_OUTPUT}" output, so it cannot give CLIP skip 2`);
      }
      outName = PENULTIMATE_OUTPUT;
    } else {
      outName = te.outputs.some((o) => o.name === 'last_hidden_state') ? 'last_hidden_state' : te.outputs[0]!.name;
    }
    const out = await this.host.run('textEncoder', feeds, [outName]);
    return toFloat32(out[outName]!);
  }

  /**
   * One UNet call on a batch: sample [N,C,h,w], one timestep for all rows, conditioning [N,77,hidden]. The
   * conditioning's array must not be modified afterwards: the worker keeps it for later calls. When `signal` is
   * aborted during the call, the call is abandoned at once (SessionCallAborted; see SessionHost).
   */
  async predict(sample: Tensor32, t: number, context: Tensor32, signal?: AbortSignal): Promise<Float32Array> {
    const unet = this.info.parts.unet;
    const sampleMeta = findInput(unet, 'sample', this.folder.parts.unet);
    const tMeta = findInput(unet, 'timestep', this.folder.parts.unet);
    const ehsMeta = findInput(unet, 'encoder_hidden_states', this.folder.parts.unet);
    const batch = sample.shape[0]!;
    const tDims = tMeta.shape.length === 0 ? [] : [batch];
    const tCount = tMeta.shape.length === 0 ? 1 : batch;
    let timestep: WireTensor;
    // A fractional t (σ-based samplers) goes in the declared dtype as diffusers' ONNX pipeline's
    // np.array([t], dtype=...) casts it: truncated for integer inputs, rounded to float16/float32 otherwise.
    if (tMeta.type === 'int64') timestep = { type: 'int64', dims: tDims, data: new BigInt64Array(tCount).fill(BigInt(Math.trunc(t))) };
    else if (tMeta.type === 'float16') timestep = { type: 'float16', dims: tDims, data: toFloat16Array(new Float32Array(tCount).fill(t)) };
    else if (tMeta.type === 'int32') timestep = { type: 'int32', dims: tDims, data: new Int32Array(tCount).fill(Math.trunc(t)) };
    else timestep = { type: 'float32', dims: tDims, data: new Float32Array(tCount).fill(t) };
    this.unetCalls++;
    const outName = unet.outputs[0]!.name;
    // The sample moves to the worker instead of being cloned, so it must be an array of its own, not the caller's.
    const sampleFeed = floatFeed(sampleMeta, sample, true);
    const out = await this.host.run(
      'unet',
      // The conditioning is the same at every step of a loop: it crosses to the worker (and to fp16) once.
      { sample: sampleFeed, timestep, encoder_hidden_states: this.host.keep(context.data, () => floatFeed(ehsMeta, context)) },
      [outName],
      [sampleFeed.data.buffer as ArrayBuffer, timestep.data.buffer as ArrayBuffer],
      signal,
    );
    return toFloat32(out[outName]!).data;
  }

  /** Decodes latents one image at a time (as diffusers does; fp16 VAEs misbehave on batches) → [N,3,H,W] in ≈[-1,1]. */
  async decode(latent: Tensor32): Promise<Tensor32> {
    const vae = this.info.parts.vaeDecoder;
    const inMeta = findInput(vae, 'latent_sample', this.folder.parts.vaeDecoder);
    const [n, c, h, w] = latent.shape as [number, number, number, number];
    const per = c * h * w;
    const outName = vae.outputs.some((o) => o.name === 'sample') ? 'sample' : vae.outputs[0]!.name;
    // The batch's buffer is made once the first image gives the size, and each image is copied in and dropped: the
    // images are never held twice (one by one and joined), which at large sizes is the difference between fitting
    // in memory or not.
    let data = new Float32Array(0);
    let outShape: readonly number[] = [];
    const scaled = new Float32Array(per);
    for (let i = 0; i < n; i++) {
      const src = latent.data.subarray(i * per, (i + 1) * per);
      for (let j = 0; j < per; j++) scaled[j] = src[j]! / this.info.scalingFactor;
      const out = await this.host.run('vaeDecoder', { latent_sample: floatFeed(inMeta, { data: scaled, shape: [1, c, h, w] }) }, [outName]);
      const img = toFloat32(out[outName]!);
      if (i === 0) data = new Float32Array(n * img.data.length);
      data.set(img.data, i * img.data.length);
      outShape = img.shape;
    }
    return { data, shape: [n, ...outShape.slice(1)] };
  }

  /**
   * SHA-256 of each part's model.onnx, computed once per load (written into PNG metadata); for a model built from a
   * checkpoint also the checkpoint file's (`checkpoint`) and A1111's short hash of it (its first 10 hex digits).
   */
  fileHashes(): Promise<Record<string, string>> {
    this.hashes ??= (async () => {
      const result: Record<string, string> = {};
      if (this.checkpoint) {
        result['checkpoint'] = await sha256File(this.checkpoint);
        result['checkpoint_short'] = result['checkpoint'].slice(0, 10);
      }
      for (const [part, file] of Object.entries(this.folder.parts)) result[part] = await sha256File(file);
      return result;
    })();
    return this.hashes;
  }

  async dispose(): Promise<void> {
    await this.host.close();
    this.onDispose?.();
  }
}

/** The folder's scheduler config (read once, when the folder was inspected) as DDIM reads it. */
async function readSchedulerConfig(folder: ModelFolder): Promise<{ config: SchedulerConfig; json: unknown }> {
  try {
    return { config: parseSchedulerConfig(folder.schedulerJson), json: folder.schedulerJson };
  } catch (err) {
    throw new ModelFolderError(`${folder.schedulerConfigFile}: ${(err as Error).message}`, folder.schedulerConfigFile);
  }
}

/** The scheduler JSON as the samplers read it: ε, since PredictNoise converts other predictions first. */
function withEpsilon(json: unknown): unknown {
  return typeof json === 'object' && json !== null && !Array.isArray(json) ? { ...json, prediction_type: 'epsilon' } : json;
}

/** A float input as the model declares it; `owned` makes sure the data is a fresh array the feed alone holds. */
function floatFeed(meta: ValueMeta, t: Tensor32, owned = false): WireTensor {
  if (meta.type === 'float16') return { type: 'float16', dims: t.shape, data: toFloat16Array(t.data) };
  return { type: 'float32', dims: t.shape, data: owned ? t.data.slice() : t.data };
}

function toFloat32(t: WireTensor): Tensor32 {
  if (t.type === 'float32') return { data: t.data as Float32Array, shape: t.dims };
  if (t.type === 'float16') return { data: fromFloat16Array(t.data as Uint16Array), shape: t.dims };
  throw new Error(`unexpected output type ${t.type}`);
}

/** SHA-256 of a file, read in 1 MiB pieces (model files are gigabytes). */
export async function sha256File(file: string): Promise<string> {
  const h = createHash('sha256');
  // One buffer for the whole file: a stream's fresh 64 KiB chunk per read leaves the server's heap as large as the
  // model (the C allocator keeps it), which would undo what releasing an idle model returns.
  const buf = Buffer.allocUnsafeSlow(HASH_BUFFER_BYTES);
  const fh = await open(file, 'r');
  try {
    for (let n; (n = (await fh.read(buf, 0, buf.length, null)).bytesRead) > 0;) h.update(buf.subarray(0, n));
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

const HASH_BUFFER_BYTES = 1 << 20;
