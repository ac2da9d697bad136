import type { NodeDefOf, NodeType } from '../../nodes/index.js';
import { isNodeType } from '../../nodes/index.js';
import { encodePrompt } from './conditioning/encode-prompt.js';
import { blendNoise } from './fusion/blend-noise.js';
import { saliencyMask } from './fusion/saliency-mask.js';
import { switchAtTimestep } from './fusion/switch-at-timestep.js';
import { decode } from './image/decode.js';
import { saveImage } from './image/save-image.js';
import { loadLatent } from './latent/load-latent.js';
import { noiseLatent } from './latent/noise-latent.js';
import { saveLatent } from './latent/save-latent.js';
import { loadLora } from './model/load-lora.js';
import { loadModel } from './model/load-model.js';
import { ddimStep } from './sampling/ddim-step.js';
import { predictNoise } from './sampling/predict-noise.js';
import { sampler } from './sampling/sampler.js';
import type { NodeImpl, TypedImpl } from './types.js';

/**
 * The server-side implementation of every node type. Its type makes a missing implementation, one registered under
 * another type's name, or one whose kind (once / per-step) does not match its outputs a compile error.
 */
export const IMPLEMENTATIONS: { readonly [T in NodeType]: TypedImpl<NodeDefOf<T>> } = {
  LoadModel: loadModel,
  LoadLoRA: loadLora,
  EncodePrompt: encodePrompt,
  NoiseLatent: noiseLatent,
  LoadLatent: loadLatent,
  SaveLatent: saveLatent,
  PredictNoise: predictNoise,
  DDIMStep: ddimStep,
  Sampler: sampler,
  SaliencyMask: saliencyMask,
  BlendNoise: blendNoise,
  SwitchAtTimestep: switchAtTimestep,
  Decode: decode,
  SaveImage: saveImage,
};

/** The implementation of a node type named in untrusted input (own keys only: never a prototype member). */
export function implementationOf(type: string): NodeImpl | undefined {
  return isNodeType(type) ? IMPLEMENTATIONS[type] : undefined;
}
