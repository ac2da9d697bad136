import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * What one UNet call holds at its peak, per latent row (one image of the batch; CFG calls have two per image):
 * `perPixel · n + perPixelSquared · n²` bytes for a latent of n pixels (the squared term is self-attention).
 */
export interface UnetActivation {
  readonly perPixel: number;
  readonly perPixelSquared: number;
}

export interface MeasuredActivation extends UnetActivation {
  /** The measurements the factors were fitted to: latent side, pixels and bytes held at the peak, per row. */
  readonly points: readonly { readonly side: number; readonly pixels: number; readonly bytes: number }[];
  readonly measuredAt: string;
}

interface StoreFile {
  readonly version: 1;
  /** By SHA-256 of unet/model.onnx. */
  readonly unets: Record<string, MeasuredActivation>;
  /** Each UNet file seen, with the stats it had when hashed: lets a lookup by path skip re-hashing gigabytes. */
  readonly files: Record<string, { readonly size: number; readonly mtimeMs: number; readonly sha256: string }>;
}

const EMPTY: StoreFile = { version: 1, unets: {}, files: {} };

/**
 * The measured UNet activation factors (activation-profiler.ts), in `<data dir>/unet-activations.json`: keyed by the
 * SHA-256 of unet/model.onnx, so they survive restarts and follow a model folder that is moved or copied, and read
 * afresh on each lookup, so every process on the same data dir sees what another measured.
 */
export class ActivationStore {
  readonly file: string;
  /** Writes in this process, one after another (each reads, merges and renames the whole file into place). */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'unet-activations.json');
  }

  private async read(): Promise<StoreFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return EMPTY;
    }
    try {
      const value = JSON.parse(text) as Partial<StoreFile>;
      if (value.version !== 1 || typeof value.unets !== 'object' || typeof value.files !== 'object') return EMPTY;
      return { version: 1, unets: value.unets ?? {}, files: value.files ?? {} };
    } catch {
      return EMPTY; // a damaged file is measured again, not fatal
    }
  }

  private update(change: (s: StoreFile) => void): Promise<void> {
    const next = this.writing.then(async () => {
      const s = await this.read();
      change(s);
      await mkdir(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.${randomUUID()}.tmp`;
      await writeFile(tmp, `${JSON.stringify(s, null, 1)}\n`);
      await rename(tmp, this.file);
    });
    this.writing = next.catch(() => undefined);
    return next;
  }

  /** The factors measured for the UNet with this hash. */
  async get(sha256: string): Promise<MeasuredActivation | null> {
    return (await this.read()).unets[sha256] ?? null;
  }

  async put(sha256: string, measured: MeasuredActivation): Promise<void> {
    await this.update((s) => {
      s.unets[sha256] = measured;
    });
  }

  /** The hash of a UNet file as last recorded, when the file still has the same size and modification time. */
  async knownHash(unetFile: string, s?: StoreFile): Promise<string | null> {
    const abs = path.resolve(unetFile);
    const seen = (s ?? (await this.read())).files[abs];
    if (!seen) return null;
    const st = await stat(abs).catch(() => null);
    return st && st.size === seen.size && st.mtimeMs === seen.mtimeMs ? seen.sha256 : null;
  }

  async rememberHash(unetFile: string, sha256: string, st: { size: number; mtimeMs: number }): Promise<void> {
    const abs = path.resolve(unetFile);
    await this.update((s) => {
      s.files[abs] = { size: st.size, mtimeMs: st.mtimeMs, sha256 };
    });
  }

  /** The measured factors for a UNet file, by path (no hashing): null until it has been measured. */
  async lookup(unetFile: string): Promise<MeasuredActivation | null> {
    const s = await this.read();
    const sha = await this.knownHash(unetFile, s);
    return sha ? s.unets[sha] ?? null : null;
  }
}
