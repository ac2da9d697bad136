/**
 * A model's scheduler_config.json read the way diffusers' `SchedulerClass.from_config` reads it: a key the file lacks
 * (or sets to null) takes the chosen class's own constructor default, keys the class does not take are ignored.
 * One folder config therefore gives Euler `timestep_spacing: "linspace"` when it says nothing, even though DDIM's
 * default is "leading".
 */
import { z } from 'zod';
import type { SamplerName, SigmaSchedule } from '../../../nodes/index.js';
import { describeProblem, schedulerConfigProblem } from '../model-config-limits.js';

const nullable = <T extends z.ZodType>(t: T) => t.nullable().optional();

/** Every option any of the supported classes takes; which ones a class reads is in CLASS_DEFAULTS. */
const RawConfigSchema = z.object({
  num_train_timesteps: nullable(z.number().int().min(2)),
  beta_start: nullable(z.number().nonnegative()),
  beta_end: nullable(z.number().nonnegative()),
  beta_schedule: nullable(z.enum(['linear', 'scaled_linear', 'squaredcos_cap_v2'])),
  trained_betas: nullable(z.array(z.number())),
  prediction_type: nullable(z.enum(['epsilon', 'v_prediction', 'sample'])),
  timestep_spacing: nullable(z.enum(['leading', 'trailing', 'linspace'])),
  steps_offset: nullable(z.number().int().min(0)),
  rescale_betas_zero_snr: nullable(z.boolean()),
  use_karras_sigmas: nullable(z.boolean()),
  use_exponential_sigmas: nullable(z.boolean()),
  use_beta_sigmas: nullable(z.literal(false, { error: 'beta sigmas (use_beta_sigmas) are not supported; use the Karras or exponential schedule' })),
  sigma_min: nullable(z.number().positive()),
  sigma_max: nullable(z.number().positive()),
  interpolation_type: nullable(z.literal('linear', { error: 'only interpolation_type "linear" is supported' })),
  timestep_type: nullable(z.enum(['discrete', 'continuous'])),
  final_sigmas_type: nullable(z.enum(['zero', 'sigma_min'])),
  clip_sample: nullable(z.boolean()),
  clip_sample_range: nullable(z.number().positive()),
  solver_order: nullable(z.number().int().min(1).max(3)),
  solver_type: nullable(z.enum(['midpoint', 'heun', 'bh1', 'bh2', 'logrho'])),
  lower_order_final: nullable(z.boolean()),
  euler_at_final: nullable(z.boolean()),
  lambda_min_clipped: nullable(z.number()),
  variance_type: nullable(z.never({ error: 'learned variance (variance_type) is not supported' })),
  thresholding: nullable(z.boolean()),
  dynamic_thresholding_ratio: nullable(z.number().min(0).max(1)),
  sample_max_value: nullable(z.number().positive()),
  use_lu_lambdas: nullable(z.boolean()),
  predict_x0: nullable(z.literal(true, { error: 'UniPC with predict_x0 false is not supported' })),
  disable_corrector: nullable(z.array(z.number().int().min(0))),
  solver_p: nullable(z.never({ error: 'a solver_p scheduler is not supported' })),
});

/** The options of all classes, resolved; a class's sampler reads only its own. */
export interface ResolvedConfig {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
  trained_betas: number[] | null;
  prediction_type: 'epsilon' | 'v_prediction' | 'sample';
  timestep_spacing: 'leading' | 'trailing' | 'linspace';
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
  use_karras_sigmas: boolean;
  use_exponential_sigmas: boolean;
  sigma_min: number | null;
  sigma_max: number | null;
  timestep_type: 'discrete' | 'continuous';
  final_sigmas_type: 'zero' | 'sigma_min';
  clip_sample: boolean;
  clip_sample_range: number;
  solver_order: number;
  algorithm_type: 'dpmsolver++' | 'sde-dpmsolver++';
  solver_type: 'midpoint' | 'heun' | 'bh1' | 'bh2' | 'logrho';
  lower_order_final: boolean;
  euler_at_final: boolean;
  lambda_min_clipped: number;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  use_lu_lambdas: boolean;
  disable_corrector: number[];
  /** Options whose other values are refused with a clear message, so a config asking for them is never misread. */
  use_beta_sigmas: false;
  interpolation_type: 'linear';
  variance_type: null;
  predict_x0: true;
  solver_p: null;
}

const COMMON = {
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'linear',
  trained_betas: null,
  prediction_type: 'epsilon',
  timestep_spacing: 'linspace',
  steps_offset: 0,
  use_karras_sigmas: false,
  use_exponential_sigmas: false,
  use_beta_sigmas: false,
} as const;

/**
 * Each class's constructor defaults (diffusers' scheduling_*.py). A key missing here is one the class does not take:
 * the file's value is ignored and the neutral value in NEUTRAL applies.
 */
const CLASS_DEFAULTS: Record<Exclude<SamplerName, 'ddim'>, Partial<ResolvedConfig>> = {
  euler: {
    ...COMMON, rescale_betas_zero_snr: false, sigma_min: null, sigma_max: null, timestep_type: 'discrete', final_sigmas_type: 'zero',
    interpolation_type: 'linear',
  },
  euler_ancestral: { ...COMMON, rescale_betas_zero_snr: false },
  heun: { ...COMMON, clip_sample: false, clip_sample_range: 1.0 },
  lms: { ...COMMON },
  dpmpp_2m: {
    ...COMMON, rescale_betas_zero_snr: false, solver_order: 2, solver_type: 'midpoint',
    lower_order_final: true, euler_at_final: false, final_sigmas_type: 'zero', lambda_min_clipped: -Infinity, thresholding: false,
    dynamic_thresholding_ratio: 0.995, sample_max_value: 1.0, use_lu_lambdas: false, variance_type: null,
  },
  dpmpp_2m_sde: {},
  unipc: {
    ...COMMON, rescale_betas_zero_snr: false, solver_order: 2, solver_type: 'bh2', lower_order_final: true, final_sigmas_type: 'zero',
    thresholding: false, dynamic_thresholding_ratio: 0.995, sample_max_value: 1.0, disable_corrector: [], predict_x0: true,
    solver_p: null,
  },
};
CLASS_DEFAULTS.dpmpp_2m_sde = CLASS_DEFAULTS.dpmpp_2m;

const NEUTRAL: ResolvedConfig = {
  ...COMMON, trained_betas: null, rescale_betas_zero_snr: false, sigma_min: null, sigma_max: null, timestep_type: 'discrete',
  final_sigmas_type: 'zero', clip_sample: false, clip_sample_range: 1, solver_order: 1, algorithm_type: 'dpmsolver++',
  solver_type: 'midpoint', lower_order_final: false, euler_at_final: false, lambda_min_clipped: -Infinity, thresholding: false,
  dynamic_thresholding_ratio: 0.995, sample_max_value: 1, use_lu_lambdas: false, disable_corrector: [], use_beta_sigmas: false,
  interpolation_type: 'linear', variance_type: null, predict_x0: true, solver_p: null,
};

/**
 * Resolves a parsed scheduler_config.json for one sampler. `forPipeline` applies what diffusers' SD pipelines do to
 * any scheduler (steps_offset = 1, clip_sample = false). `schedule` other than "default" replaces the config's own
 * use_karras_sigmas / use_exponential_sigmas.
 */
export function resolveSamplerConfig(
  sampler: Exclude<SamplerName, 'ddim'>,
  json: unknown,
  schedule: SigmaSchedule = 'default',
  forPipeline = true,
): ResolvedConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('scheduler config must be a JSON object');
  const raw = json as Record<string, unknown>;
  const range = schedulerConfigProblem(raw); // values out of range, e.g. num_train_timesteps: 1e9 (issue 27)
  if (range) throw new Error(`invalid scheduler config for ${sampler}: ${describeProblem(range)}`);
  const defaults = CLASS_DEFAULTS[sampler];
  const out: Record<string, unknown> = { ...NEUTRAL };
  const problems: string[] = [];
  // Only the keys this class takes are read (and so validated): a DPM-only key cannot break an Euler run.
  for (const [key, def] of Object.entries(defaults)) {
    const field = RawConfigSchema.shape[key as keyof typeof RawConfigSchema.shape];
    const r = field.safeParse(raw[key]);
    if (!r.success) problems.push(`${key}: ${r.error.issues.map((i) => i.message).join('; ')}`);
    else out[key] = r.data ?? def;
  }
  if (problems.length) throw new Error(`invalid scheduler config for ${sampler}:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  const cfg = out as unknown as ResolvedConfig;
  if (cfg.trained_betas !== null && cfg.trained_betas.length !== cfg.num_train_timesteps) {
    throw new Error(`invalid scheduler config for ${sampler}: trained_betas must have num_train_timesteps entries`);
  }
  // The sampler's name picks DPMSolverMultistepScheduler's algorithm_type, whatever the folder's config says.
  cfg.algorithm_type = sampler === 'dpmpp_2m_sde' ? 'sde-dpmsolver++' : 'dpmsolver++';
  if (forPipeline) {
    cfg.steps_offset = 1;
    cfg.clip_sample = false;
  }
  if (schedule !== 'default') {
    cfg.use_karras_sigmas = schedule === 'karras';
    cfg.use_exponential_sigmas = schedule === 'exponential';
  }
  if (cfg.use_karras_sigmas && cfg.use_exponential_sigmas) {
    throw new Error('scheduler config: only one of use_karras_sigmas and use_exponential_sigmas can be true');
  }
  if ((sampler === 'dpmpp_2m' || sampler === 'dpmpp_2m_sde') && cfg.use_lu_lambdas && (cfg.use_karras_sigmas || cfg.use_exponential_sigmas)) {
    throw new Error('scheduler config: use_lu_lambdas cannot be combined with Karras or exponential sigmas');
  }
  if (sampler === 'dpmpp_2m_sde' && cfg.solver_order === 3) {
    throw new Error('scheduler config: the SDE DPM-Solver++ supports solver_order 1 or 2, not 3');
  }
  if (sampler === 'unipc' && cfg.solver_type !== 'bh1' && cfg.solver_type !== 'bh2') {
    // UniPCMultistepScheduler.__init__ maps DPM-Solver's and DEIS's solver types to bh2.
    cfg.solver_type = 'bh2';
  }
  if ((sampler === 'dpmpp_2m' || sampler === 'dpmpp_2m_sde') && cfg.solver_type !== 'midpoint' && cfg.solver_type !== 'heun') {
    // DPMSolverMultistepScheduler.__init__ maps UniPC's and DEIS's solver types to midpoint.
    cfg.solver_type = 'midpoint';
  }
  return cfg;
}
