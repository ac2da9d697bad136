import { defineNode } from '../../define.js';

/** The samplers the Sampler node offers: each is the diffusers scheduler of the same name. */
export const SAMPLER_NAMES = ['ddim', 'euler', 'euler_ancestral', 'heun', 'dpmpp_2m', 'dpmpp_2m_sde', 'lms', 'unipc'] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** Sigma spacing: the model's own scheduler config, or Karras et al.'s ρ = 7 ramp, or log-linear (exponential). */
export const SIGMA_SCHEDULES = ['default', 'karras', 'exponential'] as const;
export type SigmaSchedule = (typeof SIGMA_SCHEDULES)[number];

export const Sampler = defineNode({
  type: 'Sampler',
  title: 'Sampler',
  category: 'sampling',
  description:
    "Runs the denoising loop of a diffusers scheduler (DDIM, Euler, Euler ancestral, Heun, DPM++ 2M, DPM++ 2M SDE, LMS, " +
    "UniPC), configured by the model's scheduler_config.json. It scales the unit-variance start noise by the " +
    "scheduler's initial σ and asks its noise input for the model's prediction at every model call (Heun: two per " +
    'step but the last).',
  inputs: {
    model: { type: 'MODEL', description: 'Model whose scheduler configuration defines the noise schedule.' },
    noise: { type: 'NOISE', description: 'Noise prediction evaluated at every model call.' },
    latent: { type: 'LATENT', description: 'Unit-variance start noise (NoiseLatent); the sampler scales it.' },
  },
  outputs: { latent: { type: 'LATENT', description: 'The denoised latent x_0.' } },
  params: {
    sampler: { kind: 'enum', default: 'dpmpp_2m', options: SAMPLER_NAMES, description: 'Which diffusers scheduler steps the latent.' },
    schedule: {
      kind: 'enum',
      default: 'default',
      options: SIGMA_SCHEDULES,
      description: "default: the model's scheduler config (its timestep_spacing included); karras / exponential: σ spacing.",
    },
    steps: { kind: 'int', default: 25, min: 1, max: 1000, description: 'Number of sampling steps.' },
    seed: {
      kind: 'int',
      default: 0,
      min: 0,
      max: 4294967295,
      seed: true,
      description: 'Seed of the per-step noise of euler_ancestral and dpmpp_2m_sde (NumPy RandomState, like NoiseLatent).',
    },
  },
  output: false,
});
