import { availableParallelism } from 'node:os';
import path from 'node:path';
import { findModelFolders, inspectModelFolder, modelFolderStamp } from './model-folder.js';
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
}

export interface ModelListing {
  readonly path: string;
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
  private readonly threads: number;

  constructor(private readonly options: ModelManagerOptions = {}) {
    this.threads = options.threads ?? availableParallelism();
  }

  /**
   * Loads (or reuses) a model and marks it in use until `release` is called. An idle model whose files changed on
   * disk since it was loaded is reloaded.
   */
  async acquire(absDir: string, provider: ProviderChoice): Promise<SdModel> {
    const key = `${path.resolve(absDir)}|${provider}`;
    const stamp = await modelFolderStamp(absDir);
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
      const model = (async () => SdModel.load(key, await inspectModelFolder(absDir), providerCandidates(provider), this.threads, this.options.isolation))();
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
      if (m) loaded.set(path.resolve(m.folder.dir), m);
    }
    const result: ModelListing[] = [];
    for (const rel of await findModelFolders(root)) {
      const dir = path.join(root, rel);
      try {
        const folder = await inspectModelFolder(dir);
        const m = loaded.get(path.resolve(dir));
        result.push({
          path: rel,
          bytes: folder.bytes,
          parts: Object.keys(folder.parts),
          loaded: !!m,
          ...(m ? { provider: m.provider, latentChannels: m.info.latentChannels, vaeFactor: m.info.vaeFactor, scalingFactor: m.info.scalingFactor, dtypes: m.info.dtypes } : {}),
        });
      } catch (err) {
        result.push({ path: rel, bytes: 0, parts: [], loaded: false, error: (err as Error).message });
      }
    }
    return result;
  }

  async dispose(): Promise<void> {
    const entries = [...this.entries.values()];
    this.entries.clear();
    for (const e of entries) await (await e.model.catch(() => null))?.dispose();
  }
}
