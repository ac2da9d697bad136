import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { LoraRef } from './lora-folder.js';

/** The single-file formats LoadModel opens beside ONNX folders. */
export const CHECKPOINT_EXTENSIONS = ['.safetensors', '.ckpt', '.pt', '.pth'] as const;

export type PredictionChoice = 'auto' | 'epsilon' | 'v_prediction';

/** What a LoadModel names: an ONNX folder or a checkpoint file, with the options that change what is loaded. */
export interface ModelSource {
  /** Absolute path of an ONNX model folder or of a checkpoint file. */
  readonly path: string;
  readonly kind: 'folder' | 'checkpoint';
  /** A checkpoint's EMA UNet weights instead of its regular ones. */
  readonly ema: boolean;
  /** Absolute path of a standalone VAE (a file, or an ONNX folder with vae_decoder/), or null for the model's own. */
  readonly vae: string | null;
  readonly prediction: PredictionChoice;
  /** LoadLoRA nodes on this model, in chain order (checkpoint files only). */
  readonly loras: readonly LoraRef[];
}

export function isCheckpointFile(p: string): boolean {
  return (CHECKPOINT_EXTENSIONS as readonly string[]).includes(path.extname(p).toLowerCase());
}

/** A source for a plain folder path (every caller that loads a folder as before). */
export function folderSource(dir: string): ModelSource {
  return { path: dir, kind: 'folder', ema: false, vae: null, prediction: 'auto', loras: [] };
}

/** One string per distinct loaded model: sources that differ in any option are different models. */
export function sourceKey(source: ModelSource, provider: string): string {
  const base = path.resolve(source.path);
  if (source.kind === 'folder' && source.vae === null && source.prediction === 'auto' && source.loras.length === 0) return `${base}|${provider}`;
  const loras = source.loras.map((l) => `${path.resolve(l.file)}@${l.strengthModel}/${l.strengthClip}`).join(',');
  return `${base}|${provider}|ema=${source.ema}|vae=${source.vae ?? ''}|prediction=${source.prediction}|loras=${loras}`;
}

/** Whether a path names a file (a checkpoint or a VAE file) rather than a folder; null when it does not exist. */
export async function pathKind(p: string): Promise<'file' | 'folder' | null> {
  try {
    const s = await stat(p);
    return s.isDirectory() ? 'folder' : s.isFile() ? 'file' : null;
  } catch {
    return null;
  }
}

/**
 * Checkpoint-format files under the models root, three folders deep at most (`checkpoints/sd-v1-4.ckpt`,
 * `vae/…`), skipping ONNX model folders' insides and hidden folders.
 */
export async function findCheckpointFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const sub = path.join(dir, e.name);
      if (e.isFile() && isCheckpointFile(e.name)) found.push(path.relative(root, sub).split(path.sep).join('/'));
      else if (e.isDirectory() && depth < 3 && (await pathKind(path.join(sub, 'unet'))) !== 'folder') await walk(sub, depth + 1);
    }
  };
  await walk(root, 0);
  return found.sort();
}

/** A LoadModel's `vae` that cannot be used (not found, not a VAE, no vae_decoder/): reported on that field. */
export class VaeSourceError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'VaeSourceError';
  }
}
