/**
 * Textual-inversion embeddings, named in prompts as `embedding:NAME` (ComfyUI's syntax; prompt-syntax.ts) and read
 * from `models/embeddings/NAME`, `NAME.safetensors`, `NAME.pt` or `NAME.bin` (the first that exists, as ComfyUI's
 * load_embed looks them up; NAME may name a subfolder, never a path out of the folder).
 *
 * A file holds the vectors as one tensor [N, width] (or [width] for one vector), read with the checkpoint readers
 * (safetensors, or a PyTorch zip, whose pickle runs no code): A1111's `{'string_to_param': {'*': tensor}}` (.pt), the
 * `emb_params` tensor of A1111 safetensors files, per-encoder keys (`clip_l`, `clip_h`), or a file with one tensor.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { openTensorFile } from '../checkpoint/formats/open-tensor-file.js';
import type { StoredTensor, TensorFile } from '../checkpoint/tensor-file.js';

export const EMBEDDINGS_FOLDER = 'embeddings';
export const EMBEDDING_EXTENSIONS = ['.safetensors', '.pt', '.bin'] as const;
/** Tensor names tried in turn before any other (A1111 .pt, A1111 safetensors, SD-1 / SD-2 keyed files). */
const PREFERRED = ['*', 'emb_params', 'clip_l', 'clip_h'];
/** An embedding of more vectors than this could never fit a prompt (75 tokens a chunk): a broken file. */
const MAX_VECTORS = 4096;

export class EmbeddingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EmbeddingError';
  }
}

/** The shape of an embedding, read without its data. */
export interface EmbeddingInfo {
  readonly name: string;
  readonly file: string;
  readonly vectors: number;
  readonly width: number;
}

export interface Embedding extends EmbeddingInfo {
  /** [vectors, width], C order. */
  readonly data: Float32Array;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

/** The file embedding `name` is read from, or null when there is none (or the name leads out of the folder). */
export async function findEmbeddingFile(modelsRoot: string, name: string): Promise<string | null> {
  if (name === '' || name.includes('\0')) return null;
  const dir = path.resolve(modelsRoot, EMBEDDINGS_FOLDER);
  const base = path.resolve(dir, name);
  const back = path.relative(dir, base);
  if (back === '' || back.startsWith('..') || path.isAbsolute(back)) return null;
  if (await isFile(base)) return base;
  for (const ext of EMBEDDING_EXTENSIONS) if (await isFile(base + ext)) return base + ext;
  return null;
}

function pick(file: TensorFile, width: number | null): StoredTensor {
  const all = [...file.tensors.values()];
  if (all.length === 0) throw new EmbeddingError(`${file.path}: holds no tensor`);
  const chosen =
    PREFERRED.map((n) => file.tensors.get(n)).find((t) => t !== undefined) ??
    (width !== null ? all.find((t) => t.shape[t.shape.length - 1] === width) : undefined) ??
    all[0]!;
  if (chosen.shape.length < 1 || chosen.shape.length > 2 || chosen.shape.some((d) => d < 1)) {
    throw new EmbeddingError(`${file.path}: tensor "${chosen.name}" is [${chosen.shape.join(', ')}], not [vectors, width] or [width]`);
  }
  if (chosen.dtype === 'BOOL' || chosen.dtype.startsWith('I') || chosen.dtype === 'U8') {
    throw new EmbeddingError(`${file.path}: tensor "${chosen.name}" is ${chosen.dtype}, not floating point`);
  }
  const vectors = chosen.shape.length === 2 ? chosen.shape[0]! : 1;
  if (vectors > MAX_VECTORS) throw new EmbeddingError(`${file.path}: ${vectors} vectors, more than a prompt can hold`);
  return chosen;
}

async function withFile<T>(modelsRoot: string, name: string, use: (file: TensorFile, path: string) => Promise<T>): Promise<T> {
  const found = await findEmbeddingFile(modelsRoot, name);
  if (found === null) throw new EmbeddingError(`embedding "${name}" not found in ${EMBEDDINGS_FOLDER}/ (${EMBEDDING_EXTENSIONS.join(', ')})`);
  let file: TensorFile;
  try {
    file = await openTensorFile(found);
  } catch (err) {
    throw new EmbeddingError(`embedding "${name}": ${(err as Error).message}`);
  }
  try {
    return await use(file, found);
  } finally {
    await file.close();
  }
}

function infoOf(name: string, file: string, t: StoredTensor): EmbeddingInfo {
  return { name, file, vectors: t.shape.length === 2 ? t.shape[0]! : 1, width: t.shape[t.shape.length - 1]! };
}

/** The shape of embedding `name` (for validation); `width` is the text encoder's, to pick among several tensors. */
export function inspectEmbedding(modelsRoot: string, name: string, width: number | null = null): Promise<EmbeddingInfo> {
  return withFile(modelsRoot, name, async (file, found) => infoOf(name, found, pick(file, width)));
}

/** Embedding `name` with its vectors as float32. */
export function readEmbedding(modelsRoot: string, name: string, width: number | null = null): Promise<Embedding> {
  return withFile(modelsRoot, name, async (file, found) => {
    const t = pick(file, width);
    return { ...infoOf(name, found, t), data: await file.readFloat32(t.name) };
  });
}

/** Every embedding name under models/embeddings (subfolders as `sub/name`), extensions dropped, sorted. */
export async function listEmbeddings(modelsRoot: string): Promise<string[]> {
  const root = path.join(modelsRoot, EMBEDDINGS_FOLDER);
  const names = new Set<string>();
  const walk = async (dir: string, prefix: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      if (e.isDirectory() && depth < 4) await walk(path.join(dir, e.name), `${prefix}${e.name}/`, depth + 1);
      else if (e.isFile()) {
        const ext = EMBEDDING_EXTENSIONS.find((x) => e.name.toLowerCase().endsWith(x));
        if (ext) names.add(prefix + e.name.slice(0, -ext.length));
      }
    }
  };
  await walk(root, '', 0);
  return [...names].sort();
}
