import { existsSync } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseJsonLimited } from '../../nodes/json-limits.js';
import { describeProblem, schedulerConfigProblem, unetConfigProblem, vaeConfigProblem, type ConfigProblem } from './model-config-limits.js';

/** The ONNX parts FuseGraph runs. Found by folder name, never by model_index.json keys (exporters disagree). */
export const PART_FOLDERS = { textEncoder: 'text_encoder', unet: 'unet', vaeDecoder: 'vae_decoder' } as const;
export type PartName = keyof typeof PART_FOLDERS;

const EXTERNAL_DATA_NAMES = ['weights.pb', 'model.onnx_data', 'model.onnx.data'];

export class ModelFolderError extends Error {
  constructor(message: string, readonly file: string) {
    super(message);
    this.name = 'ModelFolderError';
  }
}

/**
 * A config value out of range (model-config-limits.ts): the file and the key are named. Admission refuses a run naming
 * such a folder (preflight.ts), LoadModel fails with it and /api/models lists it.
 */
export class ModelConfigError extends ModelFolderError {
  constructor(file: string, readonly key: string, detail: string) {
    super(`${file}: ${detail}`, file);
    this.name = 'ModelConfigError';
  }
}

/**
 * Checks the values of a folder's parsed configs against their ranges (the one check the folder reader and admission
 * share, issue 27); throws a ModelConfigError naming the file and the key of the first value out of range.
 */
export function checkModelConfigs(configs: readonly { readonly file: string; readonly json: unknown; readonly kind: 'scheduler' | 'unet' | 'vae' }[]): void {
  const check: Record<'scheduler' | 'unet' | 'vae', (json: unknown) => ConfigProblem | null> = {
    scheduler: schedulerConfigProblem, unet: unetConfigProblem, vae: vaeConfigProblem,
  };
  for (const { file, json, kind } of configs) {
    const problem = json === null ? null : check[kind](json);
    if (problem) throw new ModelConfigError(file, problem.key, describeProblem(problem));
  }
}

export interface ModelFolder {
  readonly dir: string;
  readonly parts: Readonly<Record<PartName, string>>;
  readonly tokenizerDir: string;
  readonly schedulerConfigFile: string;
  /** scheduler_config.json as read (depth-limited) and range-checked when the folder was inspected. */
  readonly schedulerJson: Readonly<Record<string, unknown>>;
  /** vae_decoder/config.json, when present. */
  readonly vaeConfig: Readonly<Record<string, unknown>> | null;
  readonly unetConfig: Readonly<Record<string, unknown>> | null;
  /** Bytes on disk of the ONNX files and their external weights: the memory-budget estimate. */
  readonly bytes: number;
}

/** A config file as a JSON object (depth and size limited), or null when absent. */
export async function readJsonIfExists(file: string): Promise<Record<string, unknown> | null> {
  if (!existsSync(file)) return null;
  try {
    const value: unknown = parseJsonLimited(await readFile(file, 'utf8'), { what: 'the file' });
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ModelFolderError(`${file}: invalid JSON (${(err as Error).message})`, file);
  }
}

/** Checks that a folder has every part FuseGraph needs; each missing file is named. */
export async function inspectModelFolder(dir: string): Promise<ModelFolder> {
  if (!existsSync(dir) || !(await stat(dir)).isDirectory()) throw new ModelFolderError(`model folder not found: ${dir}`, dir);
  const missing: string[] = [];
  const parts = {} as Record<PartName, string>;
  let bytes = 0;
  for (const [part, folder] of Object.entries(PART_FOLDERS) as [PartName, string][]) {
    const file = path.join(dir, folder, 'model.onnx');
    parts[part] = file;
    if (!existsSync(file)) {
      missing.push(file);
      continue;
    }
    bytes += (await stat(file)).size;
    for (const name of EXTERNAL_DATA_NAMES) {
      const ext = path.join(dir, folder, name);
      if (existsSync(ext)) bytes += (await stat(ext)).size;
    }
  }
  const tokenizerDir = path.join(dir, 'tokenizer');
  for (const f of ['vocab.json', 'merges.txt']) if (!existsSync(path.join(tokenizerDir, f))) missing.push(path.join(tokenizerDir, f));
  const schedulerConfigFile = path.join(dir, 'scheduler', 'scheduler_config.json');
  if (!existsSync(schedulerConfigFile)) missing.push(schedulerConfigFile);
  if (missing.length) {
    throw new ModelFolderError(`model folder ${dir} is incomplete; missing: ${missing.join(', ')}`, missing[0]!);
  }
  const vaeConfigFile = path.join(dir, 'vae_decoder', 'config.json');
  const unetConfigFile = path.join(dir, 'unet', 'config.json');
  const vaeConfig = await readJsonIfExists(vaeConfigFile);
  const unetConfig = await readJsonIfExists(unetConfigFile);
  // Present: its absence was reported above as missing.
  const schedulerJson = (await readJsonIfExists(schedulerConfigFile))!;
  // Every config value in range before anything uses one (issue 27): a 1e9 num_train_timesteps froze the server.
  checkModelConfigs([
    { file: schedulerConfigFile, json: schedulerJson, kind: 'scheduler' },
    { file: unetConfigFile, json: unetConfig, kind: 'unet' },
    { file: vaeConfigFile, json: vaeConfig, kind: 'vae' },
  ]);
  return { dir, parts, tokenizerDir, schedulerConfigFile, schedulerJson, vaeConfig, unetConfig, bytes };
}

/** The VAE's spatial factor from vae_decoder/config.json (2^(levels − 1), as diffusers computes it), or null. */
export function vaeFactorFromConfig(vaeConfig: ModelFolder['vaeConfig']): number | null {
  const blocks = vaeConfig?.block_out_channels;
  return Array.isArray(blocks) && blocks.length > 0 ? 2 ** (blocks.length - 1) : null;
}

/** Model folders directly under the models root and one level deeper (e.g. models/demo/general). */
export async function findModelFolders(root: string): Promise<string[]> {
  const found: string[] = [];
  const looksLikeModel = (dir: string): boolean => existsSync(path.join(dir, 'unet', 'model.onnx'));
  const walk = async (dir: string, depth: number): Promise<void> => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory() || e.name.startsWith('.')) continue;
      const sub = path.join(dir, e.name);
      if (looksLikeModel(sub)) found.push(path.relative(root, sub).split(path.sep).join('/'));
      else if (depth < 2) await walk(sub, depth + 1);
    }
  };
  await walk(root, 0);
  return found.sort();
}

/** Size and modification time of each file, or "missing": enough to notice that a file was replaced. */
export async function fileStamps(files: readonly string[]): Promise<string> {
  const stamps = await Promise.all(
    files.map(async (f) => {
      try {
        const s = await stat(f);
        return `${f}:${s.size}:${s.mtimeMs}`;
      } catch {
        return `${f}:missing`;
      }
    }),
  );
  return stamps.join('|');
}

/** A cheap identity of a model folder's contents (stats only): it changes when a part is re-exported. */
export function modelFolderStamp(dir: string): Promise<string> {
  return fileStamps([
    ...Object.values(PART_FOLDERS).map((f) => path.join(dir, f, 'model.onnx')),
    path.join(dir, 'scheduler', 'scheduler_config.json'),
    path.join(dir, 'tokenizer', 'vocab.json'),
    path.join(dir, 'tokenizer', 'merges.txt'),
    path.join(dir, 'vae_decoder', 'config.json'),
  ]);
}
