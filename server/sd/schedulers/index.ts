/** Creates the stepping state of a sampler from a model's scheduler_config.json. */
import type { SamplerName, SigmaSchedule } from '../../../nodes/index.js';
import { DDIMSchedule, parseSchedulerConfig } from '../scheduler.js';
import { resolveSamplerConfig } from './config.js';
import { DdimRun } from './ddim-run.js';
import { DpmSolverRun } from './dpm-solver.js';
import { EulerAncestralRun, EulerRun, HeunRun, LmsRun } from './k-diffusion.js';
import type { SamplerRun } from './sampler-run.js';
import { UniPcRun } from './unipc.js';

export type { SamplerRun } from './sampler-run.js';

export interface SamplerOptions {
  readonly sampler: SamplerName;
  readonly schedule: SigmaSchedule;
  readonly steps: number;
  /** Samples per batch: dynamic thresholding works per sample. */
  readonly batch?: number;
  /** Apply the SD pipelines' steps_offset = 1 / clip_sample = false (default true). */
  readonly forPipeline?: boolean;
}

export function createSampler(schedulerJson: unknown, o: SamplerOptions): SamplerRun {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new RangeError(`steps must be an integer ≥ 1, got ${o.steps}`);
  if (o.sampler === 'ddim') {
    // DDIMScheduler has no σ spacing options: its timesteps come from timestep_spacing alone.
    if (o.schedule !== 'default') throw new Error(`ddim has no ${o.schedule} schedule (DDIMScheduler steps in ᾱ by timestep_spacing); use schedule "default"`);
    return new DdimRun(new DDIMSchedule(parseSchedulerConfig(schedulerJson, o.forPipeline ?? true), o.steps));
  }
  const c = resolveSamplerConfig(o.sampler, schedulerJson, o.schedule, o.forPipeline ?? true);
  if (o.steps > c.num_train_timesteps) {
    throw new RangeError(`steps must be at most num_train_timesteps (${c.num_train_timesteps}), got ${o.steps}`);
  }
  const batch = o.batch ?? 1;
  let run: SamplerRun;
  switch (o.sampler) {
    case 'euler':
      run = new EulerRun(c, o.steps);
      break;
    case 'euler_ancestral':
      run = new EulerAncestralRun(c, o.steps);
      break;
    case 'heun':
      run = new HeunRun(c, o.steps);
      break;
    case 'lms':
      run = new LmsRun(c, o.steps);
      break;
    case 'dpmpp_2m':
    case 'dpmpp_2m_sde':
      run = new DpmSolverRun(c, o.steps, batch);
      break;
    case 'unipc':
      run = new UniPcRun(c, o.steps, batch);
      break;
  }
  for (const t of run.timesteps) {
    if (!(t >= 0 && t < c.num_train_timesteps)) {
      throw new RangeError(`${o.sampler}: ${o.steps} steps with ${c.timestep_spacing} spacing give timestep ${t}, outside 0..${c.num_train_timesteps - 1}; use fewer steps`);
    }
  }
  return run;
}
