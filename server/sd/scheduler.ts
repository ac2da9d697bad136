/**
 * diffusers' DDIMScheduler (scheduling_ddim.py), driven by a model's scheduler_config.json.
 * See docs/sd-onnx.md §2 for the reference semantics this follows.
 */
import { z } from 'zod';
import { describeProblem, schedulerConfigProblem } from './model-config-limits.js';
import { computeAlphasCumprod } from './schedulers/noise-schedule.js';
import { npLinspace, roundHalfEven, trailingTimesteps } from './schedulers/sigmas.js';

export const SchedulerConfigSchema = z
  .object({
    // Defaults are DDIMScheduler's constructor defaults, which diffusers uses for any key missing from the JSON.
    num_train_timesteps: z.number().int().min(1).default(1000),
    beta_start: z.number().nonnegative().default(0.0001),
    beta_end: z.number().nonnegative().default(0.02),
    beta_schedule: z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2']).default('linear'),
    trained_betas: z.array(z.number()).nullable().default(null),
    clip_sample: z.boolean().default(true),
    clip_sample_range: z.number().positive().default(1.0),
    set_alpha_to_one: z.boolean().default(true),
    steps_offset: z.number().int().min(0).default(0),
    prediction_type: z.enum(['epsilon', 'v_prediction', 'sample']).default('epsilon'),
    thresholding: z.boolean().default(false),
    timestep_spacing: z.enum(['leading', 'trailing', 'linspace']).default('leading'),
    rescale_betas_zero_snr: z.boolean().default(false),
  })
  .refine((c) => c.trained_betas === null || c.trained_betas.length === c.num_train_timesteps, {
    message: 'trained_betas must have num_train_timesteps entries',
    path: ['trained_betas'],
  });

export type SchedulerConfig = z.output<typeof SchedulerConfigSchema>;

/**
 * Validates a parsed scheduler_config.json. Unknown keys (`_class_name`, `skip_prk_steps`, ...) are dropped.
 * `forPipeline` applies what both SD pipelines do to the scheduler before sampling: force `steps_offset = 1` and
 * `clip_sample = false` (old SD configs ship with `steps_offset: 0` / `clip_sample: true`).
 */
export function parseSchedulerConfig(json: unknown, forPipeline = true): SchedulerConfig {
  // Values out of range (num_train_timesteps: 1e9, beta_end: 5) first: the schema below lets them through (issue 27).
  const problem = schedulerConfigProblem(json);
  if (problem) throw new Error(`invalid scheduler config: ${describeProblem(problem)}`);
  const parsed = SchedulerConfigSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(`invalid scheduler config:\n${z.prettifyError(parsed.error)}`);
  }
  const cfg = parsed.data;
  return forPipeline ? { ...cfg, steps_offset: 1, clip_sample: false } : cfg;
}

function computeTimesteps(c: SchedulerConfig, n: number): number[] {
  const T = c.num_train_timesteps;
  if (c.timestep_spacing === 'leading') {
    const ratio = Math.floor(T / n);
    return Array.from({ length: n }, (_, i) => (n - 1 - i) * ratio + c.steps_offset);
  }
  // np.linspace(0, T-1, n).round(), high to low.
  if (c.timestep_spacing === 'linspace') return Array.from(npLinspace(0, T - 1, n), roundHalfEven).reverse();
  return trailingTimesteps(T, n);
}

export class DDIMSchedule {
  readonly config: SchedulerConfig;
  readonly steps: number;
  /** Timestep of each step, in sampling order (high to low). */
  readonly timesteps: Int32Array;
  /** t - floor(T/N) per step: diffusers uses this for the "previous" ᾱ whatever the spacing. Negative means final. */
  readonly prevTimesteps: Int32Array;
  readonly alphasCumprod: Float32Array;
  readonly finalAlphaCumprod: number;

  constructor(config: SchedulerConfig, steps: number) {
    if (config.thresholding) {
      throw new Error('scheduler config: thresholding (dynamic thresholding of x0) is not supported; set it to false');
    }
    const T = config.num_train_timesteps;
    if (!Number.isInteger(steps) || steps < 1 || steps > T) {
      throw new RangeError(`DDIM steps must be an integer between 1 and num_train_timesteps (${T}), got ${steps}`);
    }
    this.config = config;
    this.steps = steps;

    this.alphasCumprod = computeAlphasCumprod(config);
    this.finalAlphaCumprod = config.set_alpha_to_one ? 1 : this.alphasCumprod[0]!;

    const ts = computeTimesteps(config, steps);
    for (const t of ts) {
      if (t < 0 || t >= T) {
        throw new RangeError(
          `DDIM steps N=${steps} with ${config.timestep_spacing} spacing and steps_offset ${config.steps_offset} ` +
            `gives timestep ${t}, outside 0..${T - 1}; use fewer steps`,
        );
      }
    }
    this.timesteps = Int32Array.from(ts);
    const ratio = Math.floor(T / steps);
    this.prevTimesteps = this.timesteps.map((t) => t - ratio);
  }

  private checkIndex(stepIndex: number): void {
    if (!Number.isInteger(stepIndex) || stepIndex < 0 || stepIndex >= this.timesteps.length) {
      throw new RangeError(`step index ${stepIndex} out of range 0..${this.timesteps.length - 1}`);
    }
  }

  /** ᾱ at the step's timestep. */
  alphaAt(stepIndex: number): number {
    this.checkIndex(stepIndex);
    return this.alphasCumprod[this.timesteps[stepIndex]!]!;
  }

  /** ᾱ at t - floor(T/N), or the final ᾱ (1 or ᾱ[0]) once that goes below 0. */
  prevAlphaAt(stepIndex: number): number {
    this.checkIndex(stepIndex);
    const p = this.prevTimesteps[stepIndex]!;
    return p >= 0 ? this.alphasCumprod[p]! : this.finalAlphaCumprod;
  }

  /**
   * Every prediction type is linear in (x_t, model output), so x0 and ε reduce to four coefficients and one loop
   * serves all three.
   */
  private coefficients(stepIndex: number): { x0x: number; x0m: number; epsx: number; epsm: number } {
    const a = this.alphaAt(stepIndex);
    const sa = Math.sqrt(a);
    const sb = Math.sqrt(1 - a);
    switch (this.config.prediction_type) {
      case 'epsilon':
        return { x0x: 1 / sa, x0m: -sb / sa, epsx: 0, epsm: 1 };
      case 'v_prediction':
        return { x0x: sa, x0m: -sb, epsx: sb, epsm: sa };
      case 'sample':
        return { x0x: 0, x0m: 1, epsx: 1 / sb, epsm: -sa / sb };
    }
  }

  /**
   * One DDIM step: writes x_{t-1} into `out` (may alias `x`). `modelOutput` is ε, v or x0 per prediction_type.
   * `noise` (standard normal, same length) is required when eta > 0.
   */
  step(out: Float32Array, modelOutput: Float32Array, stepIndex: number, x: Float32Array, eta = 0, noise?: Float32Array): void {
    const n = x.length;
    if (modelOutput.length !== n || out.length !== n) {
      throw new RangeError(`DDIM step: length mismatch (x ${n}, model output ${modelOutput.length}, out ${out.length})`);
    }
    if (!(eta >= 0) || !Number.isFinite(eta)) throw new RangeError(`DDIM step: eta must be a finite number >= 0, got ${eta}`);
    if (eta > 0) {
      if (noise === undefined) throw new Error('DDIM step: eta > 0 needs a noise array');
      if (noise.length !== n) throw new RangeError(`DDIM step: noise length ${noise.length} != ${n}`);
    }

    const { x0x, x0m, epsx, epsm } = this.coefficients(stepIndex);
    const a = this.alphaAt(stepIndex);
    const ap = this.prevAlphaAt(stepIndex);
    const variance = ((1 - ap) / (1 - a)) * (1 - a / ap);
    const sigma = eta * Math.sqrt(variance);
    let radicand = 1 - ap - sigma * sigma;
    if (radicand < 0) {
      // At eta <= 1 this is only rounding noise; a clearly negative value means eta is too large (torch gives NaN).
      if (radicand < -1e-12) throw new RangeError(`DDIM step: eta=${eta} too large at step ${stepIndex} (1 - ᾱ_prev - σ² < 0)`);
      radicand = 0;
    }
    const dir = Math.sqrt(radicand);
    const sap = Math.sqrt(ap);
    const clip = this.config.clip_sample;
    const lim = this.config.clip_sample_range;

    for (let i = 0; i < n; i++) {
      const xi = x[i]!;
      const mi = modelOutput[i]!;
      let x0 = x0x * xi + x0m * mi;
      // ε comes from the unclipped x0 (diffusers' default use_clipped_model_output=False).
      const eps = epsx * xi + epsm * mi;
      if (clip) x0 = x0 > lim ? lim : x0 < -lim ? -lim : x0;
      let prev = sap * x0 + dir * eps;
      if (eta > 0) prev += sigma * noise![i]!;
      out[i] = prev;
    }
  }

  /** pred_x0 at this step (for previews), after clip_sample if enabled. */
  predictX0(out: Float32Array, modelOutput: Float32Array, stepIndex: number, x: Float32Array): void {
    const n = x.length;
    if (modelOutput.length !== n || out.length !== n) {
      throw new RangeError(`predictX0: length mismatch (x ${n}, model output ${modelOutput.length}, out ${out.length})`);
    }
    const { x0x, x0m } = this.coefficients(stepIndex);
    const clip = this.config.clip_sample;
    const lim = this.config.clip_sample_range;
    for (let i = 0; i < n; i++) {
      let x0 = x0x * x[i]! + x0m * modelOutput[i]!;
      if (clip) x0 = x0 > lim ? lim : x0 < -lim ? -lim : x0;
      out[i] = x0;
    }
  }
}

/** Per-step timesteps and ᾱ values, as printed by `fusegraph schedule`. */
export function scheduleReport(
  config: SchedulerConfig,
  steps: number,
): { timesteps: number[]; alphas_cumprod: number[]; prev_alphas_cumprod: number[] } {
  const s = new DDIMSchedule(config, steps);
  const timesteps = Array.from(s.timesteps);
  return {
    timesteps,
    alphas_cumprod: timesteps.map((_, i) => s.alphaAt(i)),
    prev_alphas_cumprod: timesteps.map((_, i) => s.prevAlphaAt(i)),
  };
}
