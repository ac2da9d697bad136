/**
 * diffusers' own scheduler tests (tests/schedulers/test_scheduler_*.py), ported with their expected full-loop sums and
 * means and their tolerances: the deterministic dummy sample, the dummy model `sample * t / (t + 1)`, 10 steps.
 * The ancestral test's numbers come from torch's CPU generator (manual_seed(0)), reproduced in test/helpers/torch-randn.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SamplerName, SigmaSchedule } from '../../nodes/index.js';
import { createSampler } from '../../server/sd/schedulers/index.js';
import { fullLoop } from '../helpers/diffusers-dummy.js';
import { TorchCpuGenerator } from '../helpers/torch-randn.js';

type Sampler = Exclude<SamplerName, 'ddim'>;

function loop(json: Record<string, unknown>, sampler: Sampler, schedule: SigmaSchedule = 'default', withTorchNoise = false): { sum: number; mean: number } {
  // The tests build the scheduler class directly, so no SD-pipeline steps_offset rule.
  const run = createSampler(json, { sampler, schedule, steps: 10, batch: 4, forPipeline: false });
  const g = new TorchCpuGenerator(0);
  return fullLoop(run, withTorchNoise ? () => g.randn(768) : undefined);
}

function near(actual: number, expected: number, tol: number, label: string): void {
  assert.ok(Math.abs(actual - expected) < tol, `${label}: ${actual} vs diffusers' ${expected} (tolerance ${tol})`);
}

/** test_scheduler_euler / _euler_ancestral / _heun / _lms: num_train_timesteps 1100, linear betas. */
const K_CONFIG = { num_train_timesteps: 1100, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear' };

describe('EulerDiscreteScheduler (test_scheduler_euler.py)', () => {
  test('full loop, no noise: sum 10.0807, mean 0.0131', () => {
    const r = loop(K_CONFIG, 'euler');
    near(r.sum, 10.0807, 1e-2, 'sum');
    near(r.mean, 0.0131, 1e-3, 'mean');
  });
  test('v_prediction: sum 0.0002, mean 2.2676e-06', () => {
    const r = loop({ ...K_CONFIG, prediction_type: 'v_prediction' }, 'euler');
    near(r.sum, 0.0002, 1e-2, 'sum');
    near(r.mean, 2.2676e-6, 1e-3, 'mean');
  });
  test('Karras sigmas: sum 124.52299499511719, mean 0.16213932633399963', () => {
    const r = loop(K_CONFIG, 'euler', 'karras');
    near(r.sum, 124.52299499511719, 1e-2, 'sum');
    near(r.mean, 0.16213932633399963, 1e-3, 'mean');
  });
});

describe('EulerAncestralDiscreteScheduler (test_scheduler_euler_ancestral.py, torch.manual_seed(0) noise)', () => {
  test('full loop: sum 152.3192, mean 0.1983', () => {
    const r = loop(K_CONFIG, 'euler_ancestral', 'default', true);
    near(r.sum, 152.3192, 1e-2, 'sum');
    near(r.mean, 0.1983, 1e-3, 'mean');
  });
  test('v_prediction: sum 108.4439, mean 0.1412', () => {
    const r = loop({ ...K_CONFIG, prediction_type: 'v_prediction' }, 'euler_ancestral', 'default', true);
    near(r.sum, 108.4439, 1e-2, 'sum');
    near(r.mean, 0.1412, 1e-3, 'mean');
  });
});

describe('HeunDiscreteScheduler (test_scheduler_heun.py)', () => {
  test('full loop, no noise: sum 0.1233, mean 0.0002; 19 model calls for 10 steps', () => {
    const run = createSampler(K_CONFIG, { sampler: 'heun', schedule: 'default', steps: 10, forPipeline: false });
    assert.equal(run.timesteps.length, 19);
    const r = loop(K_CONFIG, 'heun');
    near(r.sum, 0.1233, 1e-2, 'sum');
    near(r.mean, 0.0002, 1e-3, 'mean');
  });
  test('v_prediction: sum 4.6934e-07, mean 6.1112e-10', () => {
    const r = loop({ ...K_CONFIG, prediction_type: 'v_prediction' }, 'heun');
    near(r.sum, 4.6934e-7, 1e-2, 'sum');
    near(r.mean, 6.1112e-10, 1e-3, 'mean');
  });
  test('Karras sigmas: sum 0.00015, mean 1.9869554535034695e-07', () => {
    const r = loop(K_CONFIG, 'heun', 'karras');
    near(r.sum, 0.00015, 1e-2, 'sum');
    near(r.mean, 1.9869554535034695e-7, 1e-2, 'mean');
  });
});

describe('LMSDiscreteScheduler (test_scheduler_lms.py)', () => {
  test('full loop, no noise: sum 1006.388, mean 1.31', () => {
    const r = loop(K_CONFIG, 'lms');
    near(r.sum, 1006.388, 1e-2, 'sum');
    near(r.mean, 1.31, 1e-3, 'mean');
  });
  test('v_prediction: sum 0.0017, mean 2.2676e-06', () => {
    const r = loop({ ...K_CONFIG, prediction_type: 'v_prediction' }, 'lms');
    near(r.sum, 0.0017, 1e-2, 'sum');
    near(r.mean, 2.2676e-6, 1e-3, 'mean');
  });
  test('Karras sigmas: sum 3812.9927, mean 4.9648', () => {
    const r = loop(K_CONFIG, 'lms', 'karras');
    near(r.sum, 3812.9927, 2e-2, 'sum');
    near(r.mean, 4.9648, 1e-3, 'mean');
  });
});

/** test_scheduler_dpm_multi.py's get_scheduler_config. */
const DPM_CONFIG = {
  num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', solver_order: 2, prediction_type: 'epsilon',
  thresholding: false, sample_max_value: 1.0, algorithm_type: 'dpmsolver++', solver_type: 'midpoint', lower_order_final: false,
  euler_at_final: false, lambda_min_clipped: null, variance_type: null, final_sigmas_type: 'sigma_min',
};

describe('DPMSolverMultistepScheduler (test_scheduler_dpm_multi.py)', () => {
  test('full loop, no noise: mean 0.3301', () => near(loop(DPM_CONFIG, 'dpmpp_2m').mean, 0.3301, 1e-3, 'mean'));
  test('dynamic thresholding (ratio 0.87, max 0.5): mean 1.1364', () => {
    near(loop({ ...DPM_CONFIG, thresholding: true, dynamic_thresholding_ratio: 0.87, sample_max_value: 0.5 }, 'dpmpp_2m').mean, 1.1364, 1e-3, 'mean');
  });
  test('v_prediction: mean 0.2251', () => near(loop({ ...DPM_CONFIG, prediction_type: 'v_prediction' }, 'dpmpp_2m').mean, 0.2251, 1e-3, 'mean'));
  test('Karras sigmas + v_prediction: mean 0.2096', () => {
    near(loop({ ...DPM_CONFIG, prediction_type: 'v_prediction' }, 'dpmpp_2m', 'karras').mean, 0.2096, 1e-3, 'mean');
  });
  test('Lu lambdas + v_prediction: mean 0.1554', () => {
    near(loop({ ...DPM_CONFIG, prediction_type: 'v_prediction', use_lu_lambdas: true }, 'dpmpp_2m').mean, 0.1554, 1e-3, 'mean');
  });
  test('every order and solver type runs without NaN, the SDE variant included (the test file checks only that)', () => {
    for (const sampler of ['dpmpp_2m', 'dpmpp_2m_sde'] as const) {
      for (const solver_type of ['midpoint', 'heun']) {
        for (const solver_order of sampler === 'dpmpp_2m' ? [1, 2, 3] : [1, 2]) {
          for (const prediction_type of ['epsilon', 'sample']) {
            const r = loop({ ...DPM_CONFIG, solver_type, solver_order, prediction_type }, sampler, 'default', sampler === 'dpmpp_2m_sde');
            assert.ok(Number.isFinite(r.sum), `${sampler} ${solver_type} order ${solver_order} ${prediction_type}`);
          }
        }
      }
    }
  });
});

/** test_scheduler_unipc.py's get_scheduler_config (bh1); final_sigmas_type sigma_min is its final step to t = 0. */
const UNIPC_CONFIG = {
  num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', solver_order: 2, solver_type: 'bh1',
  final_sigmas_type: 'sigma_min',
};

describe('UniPCMultistepScheduler (test_scheduler_unipc.py)', () => {
  test('full loop, no noise: mean 0.2521', () => near(loop(UNIPC_CONFIG, 'unipc').mean, 0.2521, 1e-3, 'mean'));
  test('v_prediction: mean 0.1096', () => near(loop({ ...UNIPC_CONFIG, prediction_type: 'v_prediction' }, 'unipc').mean, 0.1096, 1e-3, 'mean'));
  test('orders 1–3, bh1 and bh2, epsilon and sample: no NaN', () => {
    for (const solver_type of ['bh1', 'bh2']) {
      for (const solver_order of [1, 2, 3]) {
        for (const prediction_type of ['epsilon', 'sample']) {
          assert.ok(Number.isFinite(loop({ ...UNIPC_CONFIG, solver_type, solver_order, prediction_type }, 'unipc').sum));
        }
      }
    }
  });
});
