import { availableParallelism } from 'node:os';
import path from 'node:path';
import type { CheckpointCache } from './checkpoint-cache.js';
import { modelFileKind, type ModelFileKind } from './model-file-kind.js';
import { ModelFolderError, checkModelConfigs, fileStamps, findModelFolders, inspectModelFolder, modelFolderStamp, readJsonIfExists, type ModelFolder } from './model-folder.js';
import { VaeSourceError, findCheckpointFiles, folderSource, pathKind, sourceKey, type ModelSource } from './model-source.js';
import { SdModel } from './sd-model.js';
import type { ProviderChoice } from '../runtime/providers.js';
import { providerCandidates } from '../runtime/providers.js';
import type { SessionIsolation } from '../runtime/session-channel.js';

export interface ModelManagerOptions {
  /** Evict least-recently-used idle models when their files' total size would exceed this. */
  readonly maxBytes?: number;
  /** intra-op threads per session worker. */
  readonly threads?: number;
  /** Where each model's sessions run (session-channel.ts). Default: a child process per model. */
  readonly isolation?: SessionIsolation;
  /** Called with each model once it has loaded (the server measures its UNet's activations: activation-profiler.ts). */
  readonly onLoaded?: (model: SdModel) => void;
  /** Where checkpoint files are built into ONNX folders; without it only ONNX folders load. */
  readonly checkpoints?: CheckpointCache;
}

/** A checkpoint build's progress: which part is being written, and how far. */
export type BuildProgress = (part: string, done: number, total: number) => void;

export interface ModelListing {
  readonly path: string;
  /** An ONNX folder, a checkpoint file, or a standalone VAE file (LoadModel's `vae`). */
  readonly kind: 'folder' | 'checkpoint' | 'vae' | 'lora';
  /** Checkpoints: sd1, sd2 or sd2-v, whether EMA weights are present, and whether a built copy is cached. */
  readonly family?: string;
  readonly ema?: boolean;
  readonly cached?: boolean;
  readonly bytes: number;
  readonly parts: readonly string[];
  readonly loaded: boolean;
  readonly provider?: string;
  readonly latentChannels?: number;
  readonly vaeFactor?: number;
  readonly scalingFactor?: number;
  readonly dtypes?: Readonly<Record<string, string>>;
  readonly error?: string;
}

interface Entry {
  readonly model: Promise<SdModel>;
  /** The folder's file stamp when loading started: a different one means the model was re-exported. */
  readonly stamp: string;
  users: number;
  bytes: number;
}

/**
 * Owns every loaded model: one per (folder, provider), created once and shared by all nodes and runs, released
 * least-recently-used when the memory budget would be exceeded.
 */
export class ModelManager {
  private readonly entries = new Map<string, Entry>();
  private readonly descriptions = new Map<string, { stamp: string; kind: ModelFileKind }>();
  private readonly threads: number;

  constructor(private readonly options: ModelManagerOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
  }

  /**
   * Loads (or reuses) a model and marks it in use until `release` is called. An idle model whose files changed on
   * disk since it was loaded is reloaded.
   */
  async acquire(what: string | ModelSource, provider: ProviderChoice, onBuild?: BuildProgress): Promise<SdModel> {
    const source = typeof what === 'string' ? folderSource(what) : what;
    const key = sourceKey(source, provider);
    const stamp = await this.stampOf(source);
    let entry = this.entries.get(key);
    if (entry && entry.stamp !== stamp && entry.users === 0) {
      this.entries.delete(key);
      void entry.model.then((m) => m.dispose(), () => undefined);
      entry = undefined;
    }
    if (entry) {
      this.entries.delete(key); // re-insert: Map order is the LRU order
      this.entries.set(key, entry);
    } else {
      const model = (async () => {
        const folder = await this.folderOf(source, provider, onBuild);
        // A loaded model's cached builds stay while it is loaded: the cache's eviction skips pinned ones.
        const unpin = [folder.dir, path.dirname(path.dirname(folder.parts.vaeDecoder))]
          .filter((d) => this.options.checkpoints && path.dirname(d) === this.options.checkpoints.dir)
          .map((d) => this.options.checkpoints!.pin(d));
        try {
          return await SdModel.load(key, folder, providerCandidates(provider), this.threads, {
            ...(this.options.isolation ? { isolation: this.options.isolation } : {}),
            ...(source.prediction !== 'auto' ? { prediction: source.prediction } : {}),
            ...(source.kind === 'checkpoint' ? { checkpoint: source.path } : {}),
            source,
            providerChoice: provider,
            onDispose: () => unpin.forEach((u) => u()),
          });
        } catch (err) {
          unpin.forEach((u) => u());
          throw err;
        }
      })();
      entry = { model, stamp, users: 0, bytes: 0 };
      this.entries.set(key, entry);
      model.then(
        (m) => {
          entry!.bytes = m.folder.bytes;
          this.options.onLoaded?.(m);
        },
        () => {
          if (this.entries.get(key) === entry) this.entries.delete(key);
        },
      );
    }
    entry.users++;
    try {
      const model = await entry.model;
      await this.evict(key);
      return model;
    } catch (err) {
      entry.users--;
      throw err;
    }
  }

  /** The files whose change means a loaded model is stale. */
  private async stampOf(source: ModelSource): Promise<string> {
    const own = source.kind === 'folder' ? await modelFolderStamp(source.path) : await fileStamps([source.path]);
    const extra = [...(source.vae === null ? [] : [source.vae]), ...source.loras.map((l) => l.file)];
    return extra.length ? `${own}|${await fileStamps(extra)}` : own;
  }

  /**
   * The ONNX folder a source runs from: the folder itself, or the cached build of a checkpoint (built first when
   * absent), with a standalone VAE's decoder in place of the model's own when `vae` is set.
   */
  private async folderOf(source: ModelSource, provider: ProviderChoice, onBuild?: BuildProgress): Promise<ModelFolder> {
    const cache = this.options.checkpoints;
    const needCache = (what: string): CheckpointCache => {
      if (!cache) throw new Error(`${what} needs the checkpoint cache, which this process was started without`);
      return cache;
    };
    // fp16 weights where the provider computes in fp16; the CPU provider runs fp32 faster (docs/models.md).
    const precision = providerCandidates(provider)[0] === 'cpu' ? 'float32' : 'float16';
    const vaeIsFile = source.vae !== null && (await pathKind(source.vae)) === 'file';
    if (source.kind === 'folder' && source.loras.length) {
      throw new ModelFolderError('LoRA is applied to checkpoint files; this is an ONNX folder, whose weights FuseGraph cannot map yet', source.path);
    }
    const dir = source.kind === 'folder'
      ? source.path
      : await needCache('a checkpoint file').ensure({
        kind: 'model', file: source.path, ema: source.ema, vaeFile: vaeIsFile ? source.vae : null, precision, loras: source.loras,
      }, onBuild);
    const folder = await inspectModelFolder(dir);
    if (source.vae === null || (vaeIsFile && source.kind === 'checkpoint')) return folder;
    try {
      const vaeDir = vaeIsFile
        ? await needCache('a VAE file').ensure({ kind: 'vae', file: source.vae, ema: false, vaeFile: null, precision: 'float32' }, onBuild)
        : source.vae;
      return await withVaeFrom(folder, vaeDir);
    } catch (err) {
      throw new VaeSourceError(`VAE ${path.basename(source.vae)}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** A model that is loaded now, by its key (`SdModel.key`, as a run reports it), without loading anything. */
  resident(key: string): Promise<SdModel> | undefined {
    return this.entries.get(key)?.model;
  }

  release(model: SdModel): void {
    const entry = this.entries.get(model.key);
    if (entry && entry.users > 0) entry.users--;
  }

  private async evict(keep: string): Promise<void> {
    const max = this.options.maxBytes;
    if (max === undefined) return;
    let total = [...this.entries.values()].reduce((s, e) => s + e.bytes, 0);
    for (const [key, entry] of [...this.entries]) {
      if (total <= max) break;
      if (key === keep || entry.users > 0 || entry.bytes === 0) continue;
      this.entries.delete(key);
      total -= entry.bytes;
      await (await entry.model).dispose();
    }
  }

  /** Disposes every loaded model no run is using (their sessions and worker threads); returns how many. */
  async releaseIdle(): Promise<number> {
    let released = 0;
    for (const [key, entry] of [...this.entries]) {
      if (entry.users > 0) continue;
      this.entries.delete(key);
      const model = await entry.model.catch(() => null);
      await model?.dispose();
      if (model) released++;
    }
    return released;
  }

  loadedKeys(): string[] {
    return [...this.entries.keys()];
  }

  async listModels(root: string): Promise<ModelListing[]> {
    const loaded = new Map<string, SdModel>();
    for (const entry of this.entries.values()) {
      const m = await entry.model.catch(() => null);
      if (m) loaded.set(m.key.split('|')[0]!, m);
    }
    const result: ModelListing[] = [];
    for (const rel of await findModelFolders(root)) {
      const dir = path.join(root, rel);
      try {
        const folder = await inspectModelFolder(dir);
        const m = loaded.get(path.resolve(dir));
        result.push({
          path: rel,
          kind: 'folder',
          bytes: folder.bytes,
          parts: Object.keys(folder.parts),
          loaded: !!m,
          ...(m ? { provider: m.provider, latentChannels: m.info.latentChannels, vaeFactor: m.info.vaeFactor, scalingFactor: m.info.scalingFactor, dtypes: m.info.dtypes } : {}),
        });
      } catch (err) {
        result.push({ path: rel, kind: 'folder', bytes: 0, parts: [], loaded: false, error: relativeTo(root, (err as Error).message) });
      }
    }
    for (const rel of await findCheckpointFiles(root)) {
      const file = path.join(root, rel);
      const m = loaded.get(path.resolve(file));
      try {
        const what = await this.fileKind(file);
        if (what.kind === 'unusable') throw new Error(what.reason);
        if (what.kind === 'lora') {
          result.push({ path: rel, kind: 'lora', bytes: what.bytes, parts: [], loaded: false });
          continue;
        }
        const d = what.description;
        if (what.kind === 'vae') {
          result.push({ path: rel, kind: 'vae', bytes: d.bytes, parts: ['vaeDecoder'], loaded: false });
          continue;
        }
        const cached = (await this.options.checkpoints?.isBuilt({ kind: 'model', file, ema: false, vaeFile: null, precision: 'float32' })) ?? false;
        result.push({
          path: rel,
          kind: 'checkpoint',
          family: d.family ?? 'sd1',
          ema: d.hasEma,
          cached: cached || !!m,
          bytes: d.bytes,
          parts: ['textEncoder', 'unet', 'vaeDecoder'],
          loaded: !!m,
          ...(m ? { provider: m.provider, latentChannels: m.info.latentChannels, vaeFactor: m.info.vaeFactor, scalingFactor: m.info.scalingFactor, dtypes: m.info.dtypes } : {}),
        });
      } catch (err) {
        result.push({ path: rel, kind: 'checkpoint', bytes: 0, parts: [], loaded: false, error: relativeTo(root, (err as Error).message) });
      }
    }
    return result;
  }

  /** What a file is, read once per file version (a listing reads headers, and a LoRA's tensors once). */
  private async fileKind(file: string): Promise<ModelFileKind> {
    const stamp = await fileStamps([file]);
    const known = this.descriptions.get(file);
    if (known?.stamp === stamp) return known.kind;
    const kind = await modelFileKind(file);
    this.descriptions.set(file, { stamp, kind });
    return kind;
  }

  async dispose(): Promise<void> {
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) await (await e.model.catch(() => null))?.dispose();
  }
}

/** A model folder whose VAE decoder comes from another folder (one with vae_decoder/, or a vae_decoder folder itself). */
async function withVaeFrom(folder: ModelFolder, vaeDir: string): Promise<ModelFolder> {
  const decoderDir = (await pathKind(path.join(vaeDir, 'vae_decoder'))) === 'folder' ? path.join(vaeDir, 'vae_decoder') : vaeDir;
  const onnx = path.join(decoderDir, 'model.onnx');
  if ((await pathKind(onnx)) !== 'file') throw new ModelFolderError(`VAE folder ${vaeDir} has no vae_decoder/model.onnx`, vaeDir);
  const configFile = path.join(decoderDir, 'config.json');
  const config = await readJsonIfExists(configFile);
  checkModelConfigs([{ file: configFile, json: config, kind: 'vae' }]);
  return { ...folder, parts: { ...folder.parts, vaeDecoder: onnx }, vaeConfig: config ?? folder.vaeConfig };
}

/** Error texts for a listing name files relative to the models root: clients need not see the server's layout. */
function relativeTo(root: string, message: string): string {
  const abs = path.resolve(root) + path.sep;
  return message.split(abs).join('');
}
