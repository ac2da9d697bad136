/** DDIMStep's scheduler (η = 0) behind the SamplerRun interface, so the Sampler node offers "ddim" like the others. */
import type { DDIMSchedule } from '../scheduler.js';
import type { SamplerRun } from './sampler-run.js';
import { checkStepArgs } from './sampler-run.js';

export class DdimRun implements SamplerRun {
  readonly timesteps: Float64Array;
  /** σ = √((1 − ᾱ)/ᾱ) at each timestep and at the final ᾱ, for reports; DDIM itself steps in ᾱ. */
  readonly sigmas: Float32Array;
  readonly initNoiseSigma = 1;
  readonly stochastic = false;
  denoised: Float32Array = new Float32Array(0);

  constructor(private readonly schedule: DDIMSchedule) {
    this.timesteps = Float64Array.from(schedule.timesteps);
    const sigma = (a: number): number => Math.sqrt((1 - a) / a);
    const n = schedule.timesteps.length;
    this.sigmas = Float32Array.from([...Array.from({ length: n }, (_, i) => sigma(schedule.alphaAt(i))), sigma(schedule.prevAlphaAt(n - 1))]);
  }

  alphaCumprodOfCall(call: number): number {
    return this.schedule.alphaAt(call);
  }

  modelInput(out: Float32Array, x: Float32Array): void {
    out.set(x);
  }

  step(x: Float32Array, modelOutput: Float32Array, call: number): void {
    checkStepArgs('ddim', this, x, modelOutput, call);
    if (this.denoised.length !== x.length) this.denoised = new Float32Array(x.length);
    this.schedule.predictX0(this.denoised, modelOutput, call, x);
    this.schedule.step(x, modelOutput, call, x);
  }
}
