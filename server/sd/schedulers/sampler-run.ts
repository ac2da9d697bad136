/** The per-run stepping state every non-DDIM sampler exposes to the Sampler node and to `fusegraph schedule`. */
export interface SamplerRun {
  /** Timestep fed to the model at each model call, high to low (Heun: 2N − 1 calls for N steps). */
  readonly timesteps: Float64Array;
  /** The scheduler's σ array (diffusers' `scheduler.sigmas`), its final entry included. */
  readonly sigmas: Float32Array;
  /** diffusers' `init_noise_sigma`: the unit-variance start noise is multiplied by it. */
  readonly initNoiseSigma: number;
  /** Whether `step` needs standard-normal noise (ancestral and SDE samplers). */
  readonly stochastic: boolean;
  /** x0 as predicted at the last step (for previews). */
  readonly denoised: Float32Array;
  /**
   * ᾱ of the noise level the model input of call `call` is at (1/(1 + σ²) for σ-based samplers): what converts a
   * v- or x0-prediction to ε at that call.
   */
  alphaCumprodOfCall(call: number): number;
  /** diffusers' `scale_model_input` for model call `call`: what the UNet sees. */
  modelInput(out: Float32Array, x: Float32Array, call: number): void;
  /** diffusers' `step` for model call `call`: advances x in place. */
  step(x: Float32Array, modelOutput: Float32Array, call: number, noise?: Float32Array): void;
}

export function checkStepArgs(name: string, run: SamplerRun, x: Float32Array, modelOutput: Float32Array, call: number, noise?: Float32Array): void {
  if (!Number.isInteger(call) || call < 0 || call >= run.timesteps.length) {
    throw new RangeError(`${name}: model call ${call} out of range 0..${run.timesteps.length - 1}`);
  }
  if (modelOutput.length !== x.length) throw new RangeError(`${name}: model output has ${modelOutput.length} values, the sample ${x.length}`);
  if (run.stochastic && (noise === undefined || noise.length !== x.length)) throw new RangeError(`${name}: needs a noise array as long as the sample`);
}

/** x0 from the model output at σ (the σ-parameterised schedulers' `pred_original_sample`). */
export function predictX0(
  out: Float32Array,
  x: Float32Array,
  modelOutput: Float32Array,
  sigma: number,
  predictionType: 'epsilon' | 'v_prediction' | 'sample',
): void {
  const n = x.length;
  if (predictionType === 'epsilon') {
    for (let i = 0; i < n; i++) out[i] = x[i]! - sigma * modelOutput[i]!;
  } else if (predictionType === 'v_prediction') {
    const c1 = -sigma / Math.sqrt(sigma * sigma + 1);
    const c2 = 1 / (sigma * sigma + 1);
    for (let i = 0; i < n; i++) out[i] = modelOutput[i]! * c1 + x[i]! * c2;
  } else {
    out.set(modelOutput);
  }
}
