import type { NodeDef } from './define.js';
import { EncodePrompt } from './defs/conditioning/encode-prompt.js';
import { BlendNoise } from './defs/fusion/blend-noise.js';
import { SaliencyMask } from './defs/fusion/saliency-mask.js';
import { SwitchAtTimestep } from './defs/fusion/switch-at-timestep.js';
import { Decode } from './defs/image/decode.js';
import { SaveImage } from './defs/image/save-image.js';
import { LoadLatent } from './defs/latent/load-latent.js';
import { NoiseLatent } from './defs/latent/noise-latent.js';
import { SaveLatent } from './defs/latent/save-latent.js';
import { LoadLoRA } from './defs/model/load-lora.js';
import { LoadModel } from './defs/model/load-model.js';
import { DDIMStep } from './defs/sampling/ddim-step.js';
import { PredictNoise } from './defs/sampling/predict-noise.js';
import { Sampler } from './defs/sampling/sampler.js';

export * from './define.js';
export * from './socket-types.js';
export * from './graph-format.js';
export {
  LoadModel, LoadLoRA, EncodePrompt, NoiseLatent, LoadLatent, SaveLatent, PredictNoise, DDIMStep,
  SaliencyMask, BlendNoise, SwitchAtTimestep, Decode, SaveImage,
  Sampler,
};
export { SAMPLER_NAMES, SIGMA_SCHEDULES } from './defs/sampling/sampler.js';
export type { SamplerName, SigmaSchedule } from './defs/sampling/sampler.js';

/** Every node type, in palette order. */
export const NODE_DEFS = [
  LoadModel, LoadLoRA, EncodePrompt, NoiseLatent, LoadLatent, PredictNoise, SaliencyMask, BlendNoise, SwitchAtTimestep,
  DDIMStep,
  Sampler,
  Decode, SaveImage, SaveLatent,
] as const satisfies readonly NodeDef[];

export type NodeType = (typeof NODE_DEFS)[number]['type'];
/** The definition of one node type, with its literal sockets and params. */
export type NodeDefOf<T extends NodeType> = Extract<(typeof NODE_DEFS)[number], { type: T }>;

const BY_TYPE: ReadonlyMap<string, NodeDef> = new Map(NODE_DEFS.map((d) => [d.type, d as NodeDef]));

export function getNodeDef(type: string): NodeDef | undefined {
  return BY_TYPE.get(type);
}

export function isNodeType(type: string): type is NodeType {
  return BY_TYPE.has(type);
}
