import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { GraphPrecision } from '../checkpoint/weights.js';
import { CHECKPOINT_MANIFEST, writeCheckpointFolder, writeVaeFolder, type CheckpointFolderManifest } from './checkpoint-folder.js';
import { writeLoraFolder, type LoraRef } from './lora-folder.js';
import { sha256File } from './sd-model.js';

/** Bumped whenever the graph builders change what they emit: older builds are then rebuilt, not reused. */
export const BUILDER_VERSION = 2;

export interface BuildRequest {
  /** A whole model, only a standalone VAE's parts (LoadModel's `vae` for any model), or a model with LoRAs merged. */
  readonly kind: 'model' | 'vae';
  readonly file: string;
  readonly ema: boolean;
  readonly vaeFile: string | null;
  readonly precision: GraphPrecision;
  /** LoRAs merged into the model's build (kind 'model'): built on top of the build without them. */
  readonly loras?: readonly LoraRef[];
}

export interface CacheEntry {
  readonly key: string;
  readonly dir: string;
  readonly bytes: number;
  readonly lastUsed: Date;
  readonly manifest: CheckpointFolderManifest | null;
}

export interface CheckpointCacheOptions {
  /** The cache folder (`<data>/checkpoints`). */
  readonly dir: string;
  /** Least-recently-used builds are removed when all of them together exceed this. */
  readonly maxBytes: number;
  readonly log?: (message: string) => void;
}

/** A build marks itself used by this file's mtime: a plain file to touch, no index to keep consistent. */
const LAST_USED = '.last-used';
const BUILDING = '.building-';

/**
 * ONNX folders built from checkpoints, keyed by the checkpoint's content (SHA-256) and the build options. A build
 * goes to a temporary folder renamed into place when complete (a crash leaves nothing half-built and the next start
 * removes the leftovers), concurrent requests for one key share one build, and the whole is bounded in bytes.
 */
export class CheckpointCache {
  private readonly building = new Map<string, Promise<string>>();
  /** Builds a loaded model uses: never evicted by this process. */
  private readonly pinned = new Map<string, number>();
  /** path|size|mtime → SHA-256: a multi-GB file is hashed once per version, not per run. */
  private hashes: Map<string, string> | null = null;

  constructor(private readonly options: CheckpointCacheOptions) {}

  get dir(): string {
    return this.options.dir;
  }

  /** The content hash of a file, computed once per (path, size, mtime). */
  async contentHash(file: string): Promise<string> {
    const s = await stat(file);
    const stamp = `${path.resolve(file)}|${s.size}|${s.mtimeMs}`;
    const known = (await this.hashIndex()).get(stamp);
    if (known) return known;
    const hash = await sha256File(file);
    this.hashes!.set(stamp, hash);
    await mkdir(this.dir, { recursive: true });
    await writeFile(path.join(this.dir, 'hashes.json'), JSON.stringify(Object.fromEntries(this.hashes!)));
    return hash;
  }

  /** The hash already known for a file's current version, without reading the file (model listings). */
  async knownHash(file: string): Promise<string | null> {
    try {
      const s = await stat(file);
      return (await this.hashIndex()).get(`${path.resolve(file)}|${s.size}|${s.mtimeMs}`) ?? null;
    } catch {
      return null;
    }
  }

  private async hashIndex(): Promise<Map<string, string>> {
    if (this.hashes) return this.hashes;
    try {
      const json = JSON.parse(await readFile(path.join(this.dir, 'hashes.json'), 'utf8')) as unknown;
      this.hashes = new Map(
        typeof json === 'object' && json !== null ? Object.entries(json).filter((e): e is [string, string] => typeof e[1] === 'string') : [],
      );
    } catch {
      this.hashes = new Map();
    }
    return this.hashes;
  }

  async keyOf(req: BuildRequest, fileHash?: string): Promise<string> {
    const h = createHash('sha256');
    h.update(JSON.stringify({
      builder: BUILDER_VERSION,
      kind: req.kind,
      checkpoint: fileHash ?? (await this.contentHash(req.file)),
      vae: req.vaeFile ? await this.contentHash(req.vaeFile) : null,
      ema: req.ema,
      precision: req.precision,
      ...(req.loras?.length
        ? { loras: await Promise.all(req.loras.map(async (l) => [await this.contentHash(l.file), l.strengthModel, l.strengthClip])) }
        : {}),
    }));
    return h.digest('hex').slice(0, 32);
  }

  /** Whether the build for `req` is in the cache now, answered without hashing anything new (null: not known). */
  async isBuilt(req: BuildRequest): Promise<boolean | null> {
    const fileHash = await this.knownHash(req.file);
    if (!fileHash || (req.vaeFile && !(await this.knownHash(req.vaeFile)))) return null;
    return existsSync(path.join(this.dir, await this.keyOf(req, fileHash), CHECKPOINT_MANIFEST));
  }

  /** The built folder for `req`, building it first when it is not cached. */
  async ensure(req: BuildRequest, onProgress?: (part: string, done: number, total: number) => void): Promise<string> {
    const key = await this.keyOf(req);
    const dir = path.join(this.dir, key);
    const pending = this.building.get(key);
    if (pending) return pending;
    if (existsSync(path.join(dir, CHECKPOINT_MANIFEST))) {
      await touch(dir);
      return dir;
    }
    const build = this.build(req, key, dir, onProgress).finally(() => this.building.delete(key));
    this.building.set(key, build);
    return build;
  }

  private async build(req: BuildRequest, key: string, dir: string, onProgress?: (part: string, done: number, total: number) => void): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    await this.removeAbandoned();
    const tmp = path.join(this.dir, `${BUILDING}${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
    const started = Date.now();
    try {
      if (req.kind === 'vae') await writeVaeFolder(req.file, tmp);
      else if (req.loras?.length) {
        // The LoRA build references the base build's weights by hard links: its tensors stay if the base is evicted.
        const base = await this.ensure({ ...req, loras: [] }, onProgress);
        const unpin = this.pin(base);
        try {
          for (const w of await writeLoraFolder(req.file, req.ema, base, req.loras, req.precision, tmp)) this.options.log?.(w);
        } finally {
          unpin();
        }
      } else await writeCheckpointFolder(req.file, tmp, { ema: req.ema, vaeFile: req.vaeFile, precision: req.precision, ...(onProgress ? { onProgress } : {}) });
      await touch(tmp);
      try {
        await rename(tmp, dir);
      } catch (err) {
        // Another process finished the same build first: theirs is as good as ours.
        if (!existsSync(path.join(dir, CHECKPOINT_MANIFEST))) throw err;
        await rm(tmp, { recursive: true, force: true });
      }
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    const what = req.loras?.length ? `${path.basename(req.file)} with LoRA ${req.loras.map((l) => path.basename(l.file)).join(' + ')}` : path.basename(req.file);
    this.options.log?.(`built ${what} into the checkpoint cache in ${((Date.now() - started) / 1000).toFixed(1)} s (${key})`);
    await this.evict(key);
    return dir;
  }

  /** Temporary build folders of processes that no longer exist (a crash or kill mid-build). */
  private async removeAbandoned(): Promise<void> {
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      if (!name.startsWith(BUILDING)) continue;
      const pid = Number(/-(\d+)-[0-9a-f]+$/.exec(name)?.[1]);
      if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) continue;
      if (pid === process.pid && [...this.building.keys()].some((k) => name.startsWith(`${BUILDING}${k}-`))) continue;
      await rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }

  pin(dir: string): () => void {
    const key = path.basename(dir);
    this.pinned.set(key, (this.pinned.get(key) ?? 0) + 1);
    return () => {
      const n = (this.pinned.get(key) ?? 1) - 1;
      if (n <= 0) this.pinned.delete(key);
      else this.pinned.set(key, n);
    };
  }

  async list(): Promise<CacheEntry[]> {
    const entries: CacheEntry[] = [];
    for (const name of await readdir(this.dir).catch(() => [] as string[])) {
      const dir = path.join(this.dir, name);
      if (name.startsWith('.') || !existsSync(path.join(dir, CHECKPOINT_MANIFEST))) continue;
      let manifest: CheckpointFolderManifest | null = null;
      try {
        manifest = JSON.parse(await readFile(path.join(dir, CHECKPOINT_MANIFEST), 'utf8')) as CheckpointFolderManifest;
      } catch {
        // listed all the same, so that `cache clear` can remove it
      }
      const lastUsed = await stat(path.join(dir, LAST_USED)).then((s) => s.mtime, () => new Date(0));
      entries.push({ key: name, dir, bytes: await folderBytes(dir), lastUsed, manifest });
    }
    return entries.sort((a, b) => b.lastUsed.getTime() - a.lastUsed.getTime());
  }

  /** Removes every build no loaded model of this process uses; returns how many. */
  async clear(): Promise<number> {
    let removed = 0;
    for (const e of await this.list()) {
      if (this.pinned.has(e.key)) continue;
      await rm(e.dir, { recursive: true, force: true });
      removed++;
    }
    return removed;
  }

  private async evict(keep: string): Promise<void> {
    const entries = await this.list();
    let total = entries.reduce((s, e) => s + e.bytes, 0);
    for (const e of [...entries].reverse()) {
      if (total <= this.options.maxBytes) break;
      if (e.key === keep || this.pinned.has(e.key)) continue;
      await rm(e.dir, { recursive: true, force: true });
      total -= e.bytes;
      this.options.log?.(`checkpoint cache over ${this.options.maxBytes} bytes: removed the least recently used build ${e.key} (${e.manifest?.source ?? '?'})`);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function touch(dir: string): Promise<void> {
  const file = path.join(dir, LAST_USED);
  const now = new Date();
  await utimes(file, now, now).catch(() => writeFile(file, ''));
}

async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += (await stat(path.join(e.parentPath, e.name))).size;
  }
  return total;
}

/** Builds of a full SD model are 2–4 GB each: room for several, bounded (`--max-checkpoint-cache`). */
export const DEFAULT_CHECKPOINT_CACHE_BYTES = 32 * 2 ** 30;

/** The cache's folder inside a process's data folder (`--data`). */
export function checkpointCacheDir(dataDir: string): string {
  return path.join(dataDir, 'checkpoints');
}
