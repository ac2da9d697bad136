/**
 * A Weights view with some tensors replaced by a function of the base tensor (a LoRA merge): what the graph
 * builders read to emit a model with LoRAs merged in. Shapes never change.
 */
import { CheckpointError } from '../tensor-file.js';
import type { Weights } from '../weights.js';

/** The patched tensor from the base one (float32, C order) and its shape; may reuse `base`'s memory. */
export type WeightPatchFn = (base: Float32Array, shape: readonly number[]) => Promise<Float32Array>;

export interface PatchedWeights extends Weights {
  /** The canonical names whose tensors differ from the base view's (GraphWeights patch mode's `changed`). */
  readonly patchedNames: ReadonlySet<string>;
}

/**
 * `base` with `patches` applied: float32(name) is the patch's result for a patched name, the base tensor for any
 * other. A patch for a name `base` does not have is an error (the key map only names the model's own weights).
 */
export function patchedWeights(base: Weights, patches: ReadonlyMap<string, WeightPatchFn>): PatchedWeights {
  for (const name of patches.keys()) {
    if (!base.has(name)) throw new CheckpointError(`a LoRA patch names ${name}, which the model does not have`, name);
  }
  const patchedNames: ReadonlySet<string> = new Set(patches.keys());
  return {
    patchedNames,
    has: (name) => base.has(name),
    shape: (name) => base.shape(name),
    names: () => base.names(),
    float32: async (name) => {
      const patch = patches.get(name);
      if (patch === undefined) return base.float32(name);
      const shape = base.shape(name);
      const data = await patch(await base.float32(name), shape);
      const expected = shape.reduce((a, b) => a * b, 1);
      if (data.length !== expected) throw new RangeError(`the patch of ${name} gave ${data.length} values for [${shape.join(', ')}]`);
      return data;
    },
  };
}
