import { link, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildTextEncoderGraph } from '../checkpoint/build/text-encoder-graph.js';
import { buildUnetGraph } from '../checkpoint/build/unet-graph.js';
import { componentWeights, describeCheckpoint } from '../checkpoint/describe.js';
import { openTensorFile } from '../checkpoint/formats/open-tensor-file.js';
import { matchLora, type LoraMatch, type LoraModel } from '../checkpoint/lora/key-map.js';
import { readLora } from '../checkpoint/lora/lora-file.js';
import { LoraMerger, loraPatches } from '../checkpoint/lora/merge.js';
import { patchedWeights } from '../checkpoint/lora/patched-weights.js';
import { CheckpointError, type TensorFile } from '../checkpoint/tensor-file.js';
import { linkBaseWeights, withWeightPatch, type GraphPrecision } from '../checkpoint/weights.js';
import { CHECKPOINT_MANIFEST } from './checkpoint-folder.js';

/** One LoRA of a LoadLoRA chain, as a model source holds it. */
export interface LoraRef {
  readonly file: string;
  readonly strengthModel: number;
  readonly strengthClip: number;
}

/** What a LoRA stack changes of a model, for admission: the keys it does not match, per file (a warning). */
export interface LoraCheck {
  readonly file: string;
  readonly matched: number;
  readonly unmatched: { readonly count: number; readonly first: readonly string[] };
}

/** Reads a LoRA file and matches it against a checkpoint; throws a CheckpointError saying what does not fit. */
export async function checkLora(checkpointFile: string, loraFile: string): Promise<LoraCheck> {
  return withModel(checkpointFile, async (model) => {
    const f = await openTensorFile(loraFile);
    try {
      const match = matchLora(await readLora(f), model);
      return { file: loraFile, matched: match.entries.length, unmatched: match.unmatched };
    } finally {
      await f.close();
    }
  });
}

async function withModel<T>(checkpointFile: string, use: (model: LoraModel, file: TensorFile) => Promise<T>): Promise<T> {
  const file = await openTensorFile(checkpointFile);
  try {
    const desc = await describeCheckpoint(file);
    if (!desc.architecture) throw new CheckpointError(`${path.basename(checkpointFile)}: ${desc.unsupported ?? 'not a Stable Diffusion checkpoint'}`, checkpointFile);
    return await use({
      architecture: desc.architecture,
      unet: componentWeights(file, desc, 'unet', { ema: false }),
      textEncoder: componentWeights(file, desc, 'textEncoder', { ema: false }),
    }, file);
  } finally {
    await file.close();
  }
}

/**
 * A checkpoint's build with a LoRA stack merged in, from its base build: only the UNet and text-encoder tensors the
 * LoRAs change are read, merged (ComfyUI's W + s·(α/r)·up·down) and written; every other tensor is referenced in the
 * base build's weights through a hard link, and the other parts are hard-linked whole. So a strength change costs
 * the changed tensors, not a rebuild of the model.
 */
export async function writeLoraFolder(
  checkpointFile: string,
  ema: boolean,
  baseDir: string,
  loras: readonly LoraRef[],
  precision: GraphPrecision,
  outDir: string,
): Promise<string[]> {
  await mkdir(outDir, { recursive: true });
  const warnings: string[] = [];
  const files: TensorFile[] = [];
  const merger = await LoraMerger.create();
  try {
    await withModel(checkpointFile, async (base, ckpt) => {
      const desc = await describeCheckpoint(ckpt);
      const model: LoraModel = { ...base, unet: componentWeights(ckpt, desc, 'unet', { ema }) };
      const apps = [];
      for (const l of loras) {
        const f = await openTensorFile(l.file);
        files.push(f);
        const match: LoraMatch = matchLora(await readLora(f), model);
        if (match.unmatched.count > 0) {
          warnings.push(`LoRA ${path.basename(l.file)}: ${match.unmatched.count} of its modules have no weight in this model, ignored (first: ${match.unmatched.first.slice(0, 3).join(', ')})`);
        }
        apps.push({ file: f, match, strengthModel: l.strengthModel, strengthClip: l.strengthClip });
      }
      const patches = loraPatches(apps, merger);
      const arch = desc.architecture!;
      const unet = patchedWeights(model.unet, patches.unet);
      const text = patchedWeights(model.textEncoder, patches.textEncoder);
      for (const [part, weights, build] of [
        ['unet', unet, (dir: string) => buildUnetGraph(unet, arch.unet, dir, { precision })],
        // As checkpoint-folder.ts builds it (textual-inversion input included): the layouts must agree.
        ['text_encoder', text, (dir: string) => buildTextEncoderGraph(text, arch.textEncoder, dir, { precision, extraEmbeddings: true })],
      ] as const) {
        const dir = path.join(outDir, part);
        await linkBaseWeights(path.join(baseDir, part, 'weights.pb'), dir);
        await withWeightPatch({ baseLocation: 'base-weights.pb', changed: (n) => weights.patchedNames.has(n) }, () => build(dir));
      }
    });
  } finally {
    await merger.release();
    for (const f of files) await f.close();
  }
  await linkTree(baseDir, outDir, new Set(['unet/model.onnx', 'unet/weights.pb', 'text_encoder/model.onnx', 'text_encoder/weights.pb', '.last-used', CHECKPOINT_MANIFEST]));
  const manifest = JSON.parse(await readFile(path.join(baseDir, CHECKPOINT_MANIFEST), 'utf8')) as Record<string, unknown>;
  const named = loras.map((l) => ({ file: path.basename(l.file), strength_model: l.strengthModel, strength_clip: l.strengthClip }));
  await writeFile(path.join(outDir, CHECKPOINT_MANIFEST), JSON.stringify({ ...manifest, loras: named }, null, 2) + '\n');
  return warnings;
}

/** Hard-links every file of `from` into `to` (same layout) except those `skip` names (relative paths). */
async function linkTree(from: string, to: string, skip: ReadonlySet<string>): Promise<void> {
  for (const e of await readdir(from, { withFileTypes: true, recursive: true })) {
    const abs = path.join(e.parentPath, e.name);
    const rel = path.relative(from, abs).split(path.sep).join('/');
    if (!e.isFile() || skip.has(rel)) continue;
    const target = path.join(to, rel);
    await mkdir(path.dirname(target), { recursive: true });
    if (!(await stat(target).catch(() => null))) await link(abs, target);
  }
}
