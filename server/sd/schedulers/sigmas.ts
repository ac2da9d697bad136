/**
 * What diffusers' `set_timesteps` does for the σ-based schedulers: inference timesteps by timestep_spacing, σ at those
 * timesteps (np.interp over the training σ), and the Karras / exponential / Lu σ ramps mapped back to (fractional)
 * timesteps by `_sigma_to_t`. NumPy computes these in float64 from float32 inputs; so does this module.
 */
import type { ResolvedConfig } from './config.js';
import { computeAlphasCumprod, trainSigmas } from './noise-schedule.js';

const f32 = Math.fround;

/** numpy's round(): ties go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const fl = Math.floor(x);
  const d = x - fl;
  if (d > 0.5) return fl + 1;
  if (d < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** np.linspace(start, stop, n) in float64: start + i·step, the endpoint pinned to stop. */
export function npLinspace(start: number, stop: number, n: number): Float64Array {
  const out = new Float64Array(n);
  const step = n > 1 ? (stop - start) / (n - 1) : 0;
  for (let i = 0; i < n; i++) out[i] = i * step + start;
  if (n > 1) out[n - 1] = stop;
  return out;
}

/**
 * np.arange(start, 0, -T/n).round() − 1, the "trailing" spacing (start = T unless λ_min_clipped cuts it). NumPy
 * fills start + i·delta with delta re-derived from the first two elements, and computes the length from the float
 * step, which is n + 1 for 62 values of n < 1000 (the extra entry is −1, and diffusers then samples an additional
 * step at "t = −1", reading ᾱ[−1] = ᾱ[T−1]). That is a bug, so only the n real timesteps are kept.
 */
export function trailingTimesteps(T: number, n: number, start = T): number[] {
  const r = T / n;
  const delta = (start + -r) - start;
  const len = Math.ceil((0 - start) / -r);
  const out: number[] = [];
  for (let i = 0; i < len; i++) {
    const t = roundHalfEven(start + i * delta) - 1;
    if (t >= 0) out.push(t);
  }
  return out;
}

/**
 * The timesteps of Euler, Euler ancestral, Heun and LMS (float32, high to low): linspace(0, T−1, n), leading
 * (i·T//n + steps_offset) or trailing.
 */
export function discreteTimesteps(c: ResolvedConfig, n: number): number[] {
  const T = c.num_train_timesteps;
  if (c.timestep_spacing === 'linspace') return Array.from(npLinspace(0, T - 1, n), f32).reverse();
  if (c.timestep_spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + c.steps_offset);
  }
  return trailingTimesteps(T, n);
}

/**
 * The integer timesteps of DPM-Solver++ and UniPC: linspace(0, last−1, n+1).round() without its final 0, leading
 * with T//(n+1), or trailing. `last` is T minus the λ_min_clipped cut.
 */
export function multistepTimesteps(c: ResolvedConfig, n: number, last: number): number[] {
  if (c.timestep_spacing === 'linspace') return Array.from(npLinspace(0, last - 1, n + 1), roundHalfEven).reverse().slice(0, n);
  if (c.timestep_spacing === 'leading') {
    const ratio = Math.floor(last / (n + 1));
    return Array.from({ length: n }, (_, i) => (n - i) * ratio + c.steps_offset);
  }
  return trailingTimesteps(c.num_train_timesteps, n, last);
}

/** np.interp(x, arange(len(fp)), fp): exact grid points return fp itself, as NumPy does. */
export function interpSigma(trainSig: Float32Array, t: number): number {
  const last = trainSig.length - 1;
  if (t <= 0) return trainSig[0]!;
  if (t >= last) return trainSig[last]!;
  const j = Math.floor(t);
  if (j === t) return trainSig[j]!;
  const slope = trainSig[j + 1]! - trainSig[j]!;
  return slope * (t - j) + trainSig[j]!;
}

/** diffusers' `_sigma_to_t`: the fractional training timestep whose log σ interpolates to log(σ). */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const logSigma = Math.log(sigma);
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i]! >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low]!;
  const hi = logSigmas[low + 1]!;
  const w = Math.min(1, Math.max(0, (lo - logSigma) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}

/** Karras et al. (2022) eq. 5, ρ = 7: σ_max^{1/ρ} → σ_min^{1/ρ} in n steps, raised back to ρ. */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  const rho = 7;
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return Array.from(npLinspace(0, 1, n), (r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/** exp(linspace(log σ_max, log σ_min, n)). */
export function exponentialSigmas(sigmaMin: number, sigmaMax: number, n: number): number[] {
  return Array.from(npLinspace(Math.log(sigmaMax), Math.log(sigmaMin), n), Math.exp);
}

/** The training schedule a σ-based scheduler starts from. */
export interface TrainSchedule {
  readonly alphasCumprod: Float32Array;
  readonly sigmas: Float32Array;
  readonly logSigmas: Float32Array;
}

/**
 * ᾱ and σ of the training schedule. With rescale_betas_zero_snr the last ᾱ is 0, so diffusers' σ-based schedulers set
 * it to 2^-24 to keep σ finite; they do that before computing σ.
 */
export function trainSchedule(c: ResolvedConfig): TrainSchedule {
  const alphasCumprod = computeAlphasCumprod(c);
  if (c.rescale_betas_zero_snr) alphasCumprod[alphasCumprod.length - 1] = 2 ** -24;
  const sigmas = trainSigmas(alphasCumprod);
  return { alphasCumprod, sigmas, logSigmas: sigmas.map((s) => f32(Math.log(s))) };
}
