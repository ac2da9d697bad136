import type { CheckpointDescription } from '../checkpoint/describe.js';
import { openTensorFile } from '../checkpoint/formats/open-tensor-file.js';
import { readLora } from '../checkpoint/lora/lora-file.js';
import { describeCheckpointFile } from './checkpoint-folder.js';

/** What a `.safetensors`/`.ckpt` under the models root is: a model, a VAE, a LoRA, or unusable (with why). */
export type ModelFileKind =
  | { readonly kind: 'checkpoint' | 'vae'; readonly description: CheckpointDescription }
  | { readonly kind: 'lora'; readonly bytes: number }
  | { readonly kind: 'unusable'; readonly reason: string };

/** Listings and workers offer each file as what it is: LoadModel's path, its vae, or LoadLoRA's path. */
export async function modelFileKind(file: string): Promise<ModelFileKind> {
  let description: CheckpointDescription;
  try {
    description = await describeCheckpointFile(file);
  } catch (err) {
    return { kind: 'unusable', reason: (err as Error).message };
  }
  if (description.layout === 'vae') return { kind: 'vae', description };
  if (description.unsupported === null) return { kind: 'checkpoint', description };
  const tensors = await openTensorFile(file);
  try {
    await readLora(tensors);
    return { kind: 'lora', bytes: tensors.bytes };
  } catch {
    return { kind: 'unusable', reason: description.unsupported };
  } finally {
    await tensors.close();
  }
}
