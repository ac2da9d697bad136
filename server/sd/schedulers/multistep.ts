/**
 * What DPMSolverMultistepScheduler and UniPCMultistepScheduler share: integer timesteps and σ by `set_timesteps`,
 * α_t / σ_t / λ_t of a σ, the x0 conversion of the model output with optional dynamic thresholding. Both work on the
 * VP sample (init_noise_sigma = 1, no input scaling).
 */
import type { ResolvedConfig } from './config.js';
import {
  exponentialSigmas,
  interpSigma,
  karrasSigmas,
  multistepTimesteps,
  npLinspace,
  roundHalfEven,
  sigmaToT,
  trainSchedule,
} from './sigmas.js';

/**
 * The state both multistep solvers keep: their schedule, the last solver_order data predictions (oldest first) and
 * how many steps have run at a lower order. Subclasses add the update rule.
 */
export abstract class MultistepRun {
  readonly timesteps: Float64Array;
  readonly sigmas: Float32Array;
  readonly initNoiseSigma = 1;
  denoised: Float32Array = new Float32Array(0);
  protected readonly outputs: (Float32Array | null)[];
  protected lowerOrderNums = 0;

  constructor(protected readonly c: ResolvedConfig, steps: number, protected readonly batch: number) {
    const s = multistepSchedule(c, steps);
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.outputs = new Array<Float32Array | null>(c.solver_order).fill(null);
  }

  alphaCumprodOfCall(call: number): number {
    const sigma = this.sigmas[call]!;
    return 1 / (1 + sigma * sigma);
  }

  /** VP samples go to the model unscaled. */
  modelInput(out: Float32Array, x: Float32Array): void {
    out.set(x);
  }
}

/** Timesteps (integers) and σ (N + 1, the final one per final_sigmas_type) of a multistep solver. */
export function multistepSchedule(c: ResolvedConfig, n: number): { timesteps: Float64Array; sigmas: Float32Array } {
  const train = trainSchedule(c);
  const T = c.num_train_timesteps;
  // λ_min_clipped cuts the schedule where λ(t) = log α_t − log σ_t falls below it (searchsorted on the flipped λ).
  let clipped = 0;
  if (c.lambda_min_clipped > -Infinity) {
    const lambda = (t: number): number => -Math.log(train.sigmas[t]!);
    while (clipped < T && lambda(T - 1 - clipped) < c.lambda_min_clipped) clipped++;
  }
  let ts = multistepTimesteps(c, n, T - clipped);
  let sig: number[];
  const ascending = Array.from(train.sigmas);
  if (c.use_karras_sigmas || c.use_exponential_sigmas) {
    const conv = c.use_karras_sigmas ? karrasSigmas : exponentialSigmas;
    sig = conv(ascending[0]!, ascending[T - 1]!, n);
    ts = sig.map((s) => roundHalfEven(sigmaToT(s, train.logSigmas)));
  } else if (c.use_lu_lambdas) {
    // diffusers' "lambdas" here are log σ from high to low, spaced uniformly (ρ = 1), then exp'd back to σ.
    const hi = train.logSigmas[T - 1]!;
    const lo = train.logSigmas[0]!;
    sig = Array.from(npLinspace(0, 1, n), (r) => Math.exp(hi + r * (lo - hi)));
    ts = sig.map((s) => roundHalfEven(sigmaToT(s, train.logSigmas)));
  } else {
    sig = ts.map((t) => interpSigma(train.sigmas, t));
  }
  const last = c.final_sigmas_type === 'sigma_min' ? train.sigmas[0]! : 0;
  return { timesteps: Float64Array.from(ts), sigmas: Float32Array.from([...sig, last]) };
}

/** α_t = 1/√(σ² + 1), σ_t = σ·α_t and λ = log α_t − log σ_t of a Karras σ. */
export function vp(sigma: number): { alpha: number; sigma: number; lambda: number } {
  const alpha = 1 / Math.sqrt(sigma * sigma + 1);
  const s = sigma * alpha;
  return { alpha, sigma: s, lambda: Math.log(alpha) - Math.log(s) };
}

/**
 * torch.quantile(|x|, ratio) per sample with linear interpolation, clamped to [1, sample_max_value], then x clamped
 * to ±s and divided by s (Imagen's dynamic thresholding, diffusers' `_threshold_sample`).
 */
export function thresholdSample(x: Float32Array, batch: number, ratio: number, maxValue: number): void {
  const per = x.length / batch;
  for (let b = 0; b < batch; b++) {
    const row = x.subarray(b * per, (b + 1) * per);
    const sorted = Float64Array.from(row, Math.abs).sort();
    const pos = ratio * (per - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(lo + 1, per - 1);
    const q = sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
    const s = Math.min(maxValue, Math.max(1, q));
    for (let i = 0; i < per; i++) row[i] = Math.min(s, Math.max(-s, row[i]!)) / s;
  }
}

/** The data prediction x0 from the model output at σ (`convert_model_output` with predict_x0 / dpmsolver++). */
export function modelOutputToX0(
  out: Float32Array,
  x: Float32Array,
  modelOutput: Float32Array,
  sigma: number,
  c: ResolvedConfig,
  batch: number,
): void {
  const { alpha, sigma: s } = vp(sigma);
  const n = x.length;
  if (c.prediction_type === 'epsilon') for (let i = 0; i < n; i++) out[i] = (x[i]! - s * modelOutput[i]!) / alpha;
  else if (c.prediction_type === 'v_prediction') for (let i = 0; i < n; i++) out[i] = alpha * x[i]! - s * modelOutput[i]!;
  else out.set(modelOutput);
  if (c.thresholding) thresholdSample(out, batch, c.dynamic_thresholding_ratio, c.sample_max_value);
}
