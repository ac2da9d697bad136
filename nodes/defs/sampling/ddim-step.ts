import { defineNode } from '../../define.js';

export const DDIMStep = defineNode({
  type: 'DDIMStep',
  title: 'DDIM Sampler',
  category: 'sampling',
  description:
    "Runs the denoising loop of diffusers' DDIMScheduler (configured by the model's scheduler_config.json). At each " +
    'timestep t it asks its noise input for ε(x_t, t) and takes one DDIM step.',
  inputs: {
    model: { type: 'MODEL', description: "Model whose scheduler configuration defines the timesteps and ᾱ." },
    noise: { type: 'NOISE', description: 'Noise prediction evaluated at every step.' },
    latent: { type: 'LATENT', description: 'Starting latent x_T.' },
  },
  outputs: { latent: { type: 'LATENT', description: 'The denoised latent x_0.' } },
  params: {
    steps: { kind: 'int', default: 50, min: 1, max: 1000, description: 'Number of DDIM steps.' },
    eta: { kind: 'float', default: 0, min: 0, max: 1, step: 0.05, description: 'DDIM η: 0 is deterministic, 1 is DDPM-like.' },
    seed: { kind: 'int', default: 0, min: 0, max: 4294967295, seed: true, description: 'Seed of the per-step noise used when η > 0.' },
  },
  output: false,
});
