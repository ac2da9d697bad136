/**
 * diffusers' Karras-family discrete schedulers (k-diffusion's samplers on the discrete σ of a VP model):
 * EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler and LMSDiscreteScheduler. They share
 * σ-spaced timesteps, `init_noise_sigma` and `scale_model_input` = x / √(σ² + 1).
 */
import type { ResolvedConfig } from './config.js';
import type { SamplerRun } from './sampler-run.js';
import { checkStepArgs, predictX0 } from './sampler-run.js';
import { discreteTimesteps, exponentialSigmas, interpSigma, karrasSigmas, sigmaToT, trainSchedule } from './sigmas.js';

const f32 = Math.fround;

/** σ per step (N + 1 with the final one) and the model timesteps, as `set_timesteps` of these classes computes them. */
function sigmaSteps(c: ResolvedConfig, n: number): { sigmas: Float32Array; timesteps: Float64Array; initNoiseSigma: number } {
  const train = trainSchedule(c);
  let ts = discreteTimesteps(c, n);
  let sig = ts.map((t) => interpSigma(train.sigmas, t));
  if (c.use_karras_sigmas || c.use_exponential_sigmas) {
    const sMin = c.sigma_min ?? sig[sig.length - 1]!;
    const sMax = c.sigma_max ?? sig[0]!;
    sig = c.use_karras_sigmas ? karrasSigmas(sMin, sMax, n) : exponentialSigmas(sMin, sMax, n);
    ts = sig.map((s) => sigmaToT(s, train.logSigmas));
  }
  const last = c.final_sigmas_type === 'sigma_min' ? train.sigmas[0]! : 0;
  const sigmas = Float32Array.from([...sig, last]);
  const timesteps =
    c.timestep_type === 'continuous' && c.prediction_type === 'v_prediction'
      ? Float64Array.from(sigmas.subarray(0, n), (s) => f32(0.25 * Math.log(s)))
      : Float64Array.from(ts, f32);
  let max = 0;
  for (const s of sigmas) max = Math.max(max, s);
  // Leading spacing starts below σ_max, so the pipeline's noise is scaled to the model-input variance σ² + 1.
  const initNoiseSigma = c.timestep_spacing === 'leading' ? f32(Math.sqrt(f32(f32(max * max) + 1))) : max;
  return { sigmas, timesteps, initNoiseSigma };
}

abstract class KarrasFamily implements SamplerRun {
  // Not readonly: Heun repeats entries for its corrector calls.
  timesteps: Float64Array;
  sigmas: Float32Array;
  readonly initNoiseSigma: number;
  abstract readonly stochastic: boolean;
  denoised: Float32Array = new Float32Array(0);
  protected readonly c: ResolvedConfig;

  constructor(c: ResolvedConfig, steps: number) {
    this.c = c;
    const s = sigmaSteps(c, steps);
    this.timesteps = s.timesteps;
    this.sigmas = s.sigmas;
    this.initNoiseSigma = s.initNoiseSigma;
  }

  /** σ at model call `call`: what `scale_model_input` divides by. */
  protected sigmaOfCall(call: number): number {
    return this.sigmas[call]!;
  }

  alphaCumprodOfCall(call: number): number {
    const sigma = this.sigmaOfCall(call);
    return 1 / (1 + sigma * sigma);
  }

  modelInput(out: Float32Array, x: Float32Array, call: number): void {
    const sigma = this.sigmaOfCall(call);
    const scale = Math.sqrt(sigma * sigma + 1);
    for (let i = 0; i < x.length; i++) out[i] = x[i]! / scale;
  }

  protected x0(x: Float32Array, modelOutput: Float32Array, sigma: number): Float32Array {
    if (this.denoised.length !== x.length) this.denoised = new Float32Array(x.length);
    predictX0(this.denoised, x, modelOutput, sigma, this.c.prediction_type);
    return this.denoised;
  }

  abstract step(x: Float32Array, modelOutput: Float32Array, call: number, noise?: Float32Array): void;
}

/** EulerDiscreteScheduler (s_churn = 0): x ← x + (x − x0)/σ · (σ_next − σ). */
export class EulerRun extends KarrasFamily {
  readonly stochastic = false;
  step(x: Float32Array, modelOutput: Float32Array, call: number): void {
    checkStepArgs('euler', this, x, modelOutput, call);
    const sigma = this.sigmas[call]!;
    const x0 = this.x0(x, modelOutput, sigma);
    const dt = this.sigmas[call + 1]! - sigma;
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + ((x[i]! - x0[i]!) / sigma) * dt;
  }
}

/** EulerAncestralDiscreteScheduler: an Euler step to σ_down, then fresh noise of σ_up. */
export class EulerAncestralRun extends KarrasFamily {
  readonly stochastic = true;
  constructor(c: ResolvedConfig, steps: number) {
    if (c.prediction_type === 'sample') throw new Error('euler_ancestral: prediction_type "sample" is not implemented by diffusers either');
    super(c, steps);
  }
  step(x: Float32Array, modelOutput: Float32Array, call: number, noise?: Float32Array): void {
    checkStepArgs('euler_ancestral', this, x, modelOutput, call, noise);
    const from = this.sigmas[call]!;
    const to = this.sigmas[call + 1]!;
    const x0 = this.x0(x, modelOutput, from);
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(to * to - up * up);
    const dt = down - from;
    for (let i = 0; i < x.length; i++) x[i] = x[i]! + ((x[i]! - x0[i]!) / from) * dt + noise![i]! * up;
  }
}

/**
 * HeunDiscreteScheduler: each step but the last is an Euler predictor and a trapezoid corrector, so the model is
 * called twice per step (2N − 1 calls); σ and timesteps after the first are repeated for the corrector call.
 */
export class HeunRun extends KarrasFamily {
  readonly stochastic = false;
  private prevDerivative: Float32Array | null = null;
  private dt = 0;
  private sampleBefore: Float32Array | null = null;

  constructor(c: ResolvedConfig, steps: number) {
    super(c, steps);
    const n = steps;
    const s = this.sigmas;
    const doubled = [s[0]!];
    for (let i = 1; i < n; i++) doubled.push(s[i]!, s[i]!);
    doubled.push(s[n]!);
    const t = [this.timesteps[0]!];
    for (let i = 1; i < n; i++) t.push(this.timesteps[i]!, this.timesteps[i]!);
    this.sigmas = Float32Array.from(doubled);
    this.timesteps = Float64Array.from(t);
  }

  step(x: Float32Array, modelOutput: Float32Array, call: number): void {
    checkStepArgs('heun', this, x, modelOutput, call);
    const first = this.prevDerivative === null;
    const sigma = first ? this.sigmas[call]! : this.sigmas[call - 1]!;
    const sigmaNext = first ? this.sigmas[call + 1]! : this.sigmas[call]!;
    // The corrector evaluates the model at σ_next, so x0 is taken there.
    const x0 = this.x0(x, modelOutput, first ? sigma : sigmaNext);
    if (this.c.clip_sample) {
      const r = this.c.clip_sample_range;
      for (let i = 0; i < x0.length; i++) x0[i] = Math.min(r, Math.max(-r, x0[i]!));
    }
    const n = x.length;
    if (first) {
      const d = new Float32Array(n);
      for (let i = 0; i < n; i++) d[i] = (x[i]! - x0[i]!) / sigma;
      this.dt = sigmaNext - sigma;
      this.prevDerivative = d;
      this.sampleBefore = Float32Array.from(x);
      for (let i = 0; i < n; i++) x[i] = x[i]! + d[i]! * this.dt;
    } else {
      const d0 = this.prevDerivative!;
      const base = this.sampleBefore!;
      for (let i = 0; i < n; i++) {
        const d = (d0[i]! + f32((x[i]! - x0[i]!) / sigmaNext)) / 2;
        x[i] = base[i]! + d * this.dt;
      }
      this.prevDerivative = null;
      this.sampleBefore = null;
    }
  }
}

/** ∫_{a}^{b} Π_{k≠j} (τ − s_k)/(s_j − s_k) dτ, exactly (scipy's quad in diffusers is exact for these polynomials). */
function lagrangeIntegral(nodes: readonly number[], j: number, a: number, b: number): number {
  // Polynomial coefficients, lowest degree first.
  let poly = [1];
  for (let k = 0; k < nodes.length; k++) {
    if (k === j) continue;
    const denom = nodes[j]! - nodes[k]!;
    const next = new Array<number>(poly.length + 1).fill(0);
    for (let d = 0; d < poly.length; d++) {
      next[d + 1]! += poly[d]! / denom;
      next[d]! -= (poly[d]! * nodes[k]!) / denom;
    }
    poly = next;
  }
  let sum = 0;
  for (let d = 0; d < poly.length; d++) sum += (poly[d]! * (b ** (d + 1) - a ** (d + 1))) / (d + 1);
  return sum;
}

/** LMSDiscreteScheduler, order 4: a linear multistep over the last derivatives in σ. */
export class LmsRun extends KarrasFamily {
  readonly stochastic = false;
  private readonly derivatives: Float32Array[] = [];
  private static readonly ORDER = 4;

  step(x: Float32Array, modelOutput: Float32Array, call: number): void {
    checkStepArgs('lms', this, x, modelOutput, call);
    const sigma = this.sigmas[call]!;
    const x0 = this.x0(x, modelOutput, sigma);
    const d = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) d[i] = (x[i]! - x0[i]!) / sigma;
    this.derivatives.push(d);
    if (this.derivatives.length > LmsRun.ORDER) this.derivatives.shift();
    const order = Math.min(call + 1, LmsRun.ORDER);
    const nodes = Array.from({ length: order }, (_, k) => this.sigmas[call - k]!);
    const coeffs = nodes.map((_, j) => lagrangeIntegral(nodes, j, sigma, this.sigmas[call + 1]!));
    // coefficient j goes with the derivative j steps back (diffusers zips them with reversed(derivatives)).
    const recent = this.derivatives.slice().reverse();
    for (let i = 0; i < x.length; i++) {
      let acc = x[i]!;
      for (let j = 0; j < order; j++) acc += coeffs[j]! * recent[j]![i]!;
      x[i] = acc;
    }
  }
}
