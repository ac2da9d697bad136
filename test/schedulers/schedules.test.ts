import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveSamplerConfig } from '../../server/sd/schedulers/config.js';
import { createSampler } from '../../server/sd/schedulers/index.js';
import { SD1_SCHEDULER_CONFIG } from '../../tools/tiny-models/make-tiny-model.js';
import { TORCH_SCHEDULES } from '../helpers/torch-schedules.js';

const sd1Sigma = TORCH_SCHEDULES.sd1!.sigmas;

test('from_config semantics: a missing or null key takes the chosen class default; foreign keys are ignored', () => {
  // Euler's timestep_spacing default is linspace, not DDIM's leading.
  assert.equal(resolveSamplerConfig('euler', {}).timestep_spacing, 'linspace');
  assert.equal(resolveSamplerConfig('euler', { timestep_spacing: null }).timestep_spacing, 'linspace');
  assert.equal(resolveSamplerConfig('euler', { timestep_spacing: 'leading' }).timestep_spacing, 'leading');
  assert.equal(resolveSamplerConfig('dpmpp_2m', {}).solver_order, 2);
  assert.equal(resolveSamplerConfig('dpmpp_2m', { solver_order: 3 }).solver_order, 3);
  assert.equal(resolveSamplerConfig('dpmpp_2m', { algorithm_type: 'sde-dpmsolver++' }).algorithm_type, 'dpmsolver++');
  assert.equal(resolveSamplerConfig('dpmpp_2m_sde', {}).algorithm_type, 'sde-dpmsolver++');
  assert.equal(resolveSamplerConfig('unipc', {}).solver_type, 'bh2');
  assert.equal(resolveSamplerConfig('unipc', { solver_type: 'midpoint' }).solver_type, 'bh2');
  // A DPM-only key with a value Euler would not understand does not break Euler; unknown keys are dropped.
  const e = resolveSamplerConfig('euler', { solver_order: 'three', _class_name: 'PNDMScheduler', skip_prk_steps: true });
  assert.equal(e.solver_order, 1);
  assert.throws(() => resolveSamplerConfig('dpmpp_2m', { solver_order: 'three' }), /solver_order/);
  assert.throws(() => resolveSamplerConfig('euler', { use_karras_sigmas: true, use_exponential_sigmas: true }), /only one/);
  // The SD pipelines force steps_offset = 1 and clip_sample = false; the schedule param overrides the config's sigmas.
  assert.equal(resolveSamplerConfig('heun', { steps_offset: 0, clip_sample: true }).steps_offset, 1);
  assert.equal(resolveSamplerConfig('heun', { clip_sample: true }).clip_sample, false);
  assert.equal(resolveSamplerConfig('heun', { clip_sample: true }, 'default', false).clip_sample, true);
  assert.equal(resolveSamplerConfig('euler', { use_karras_sigmas: true }, 'exponential').use_karras_sigmas, false);
  assert.equal(resolveSamplerConfig('euler', { use_karras_sigmas: true }).use_karras_sigmas, true);
});

test('Euler on SD1: linspace timesteps 999 … 0 (fractional), σ = torch σ at them, init σ = σ_max', () => {
  const run = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'euler', schedule: 'default', steps: 4 });
  // SD 1.x's shipped config names no timestep_spacing, so Euler uses its own linspace default.
  assert.deepEqual(Array.from(run.timesteps), [999, 666, 333, 0]);
  assert.equal(run.sigmas[0], sd1Sigma[999]);
  assert.equal(run.sigmas[3], sd1Sigma[0]);
  assert.equal(run.sigmas[4], 0);
  assert.equal(run.initNoiseSigma, sd1Sigma[999]);
  assert.ok(Math.abs(run.initNoiseSigma - 14.6146) < 1e-4);
  const frac = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'euler', schedule: 'default', steps: 7 });
  assert.deepEqual(Array.from(frac.timesteps), [999, 832.5, 666, 499.5, 333, 166.5, 0]);
  // σ between grid points is np.interp's linear interpolation of σ (not of ᾱ).
  assert.ok(Math.abs(frac.sigmas[1]! - Math.fround((sd1Sigma[832]! + sd1Sigma[833]!) / 2)) < 1e-6);
});

test('leading spacing (the demo models\' config): integer timesteps + steps_offset, init σ = √(σ_max² + 1)', () => {
  const run = createSampler({ ...SD1_SCHEDULER_CONFIG, timestep_spacing: 'leading' }, { sampler: 'euler', schedule: 'default', steps: 10 });
  assert.deepEqual(Array.from(run.timesteps), [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  assert.equal(run.sigmas[0], sd1Sigma[901]);
  assert.ok(Math.abs(run.initNoiseSigma - Math.sqrt(sd1Sigma[901]! ** 2 + 1)) < 1e-5);
});

test('DPM++ 2M on SD1: 10 steps give diffusers\' 999, 899, …, 100; init σ 1; final σ 0', () => {
  const run = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'dpmpp_2m', schedule: 'default', steps: 10 });
  assert.deepEqual(Array.from(run.timesteps), [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
  assert.equal(run.initNoiseSigma, 1);
  assert.equal(run.sigmas[10], 0);
  assert.equal(run.sigmas[5], sd1Sigma[500]);
});

test('Karras sigmas: σ_max → σ_min with ρ = 7, timesteps from _sigma_to_t (rounded for DPM, fractional for Euler)', () => {
  const n = 25;
  const dpm = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'dpmpp_2m', schedule: 'karras', steps: n });
  const sMax = sd1Sigma[999]!;
  const sMin = sd1Sigma[0]!;
  assert.ok(Math.abs(dpm.sigmas[0]! - sMax) < 1e-5 * sMax);
  assert.ok(Math.abs(dpm.sigmas[n - 1]! - sMin) < 1e-5 * sMin);
  for (let i = 0; i < n; i++) {
    const r = i / (n - 1);
    const expected = (sMax ** (1 / 7) + r * (sMin ** (1 / 7) - sMax ** (1 / 7))) ** 7;
    assert.ok(Math.abs(dpm.sigmas[i]! - expected) <= 1e-6 * expected, `σ[${i}]`);
  }
  assert.ok(dpm.timesteps.every((t) => Number.isInteger(t)));
  assert.equal(dpm.timesteps[0], 999);
  assert.equal(dpm.timesteps[n - 1], 0);
  const euler = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'euler', schedule: 'karras', steps: n });
  assert.ok(euler.timesteps.some((t) => !Number.isInteger(t)));
  // Each fractional timestep maps back to its σ through log-linear interpolation of the training σ.
  const t = euler.timesteps[5]!;
  const lo = Math.floor(t);
  const w = t - lo;
  const logSigma = (1 - w) * Math.log(sd1Sigma[lo]!) + w * Math.log(sd1Sigma[lo + 1]!);
  assert.ok(Math.abs(Math.exp(logSigma) - euler.sigmas[5]!) < 1e-4 * euler.sigmas[5]!);
});

test('exponential sigmas are log-linear from σ_max to σ_min', () => {
  const run = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'euler', schedule: 'exponential', steps: 5 });
  const ratios = Array.from({ length: 4 }, (_, i) => run.sigmas[i + 1]! / run.sigmas[i]!);
  for (const r of ratios) assert.ok(Math.abs(r - ratios[0]!) < 1e-5, `${ratios}`);
});

test('Heun calls the model 2N − 1 times, repeating each timestep after the first for its corrector', () => {
  const run = createSampler(SD1_SCHEDULER_CONFIG, { sampler: 'heun', schedule: 'default', steps: 4 });
  assert.deepEqual(Array.from(run.timesteps), [999, 666, 666, 333, 333, 0, 0]);
  assert.equal(run.sigmas.length, 8);
});

test('bad steps and impossible configs are clear errors', () => {
  assert.throws(() => createSampler({}, { sampler: 'euler', schedule: 'default', steps: 0 }), RangeError);
  assert.throws(() => createSampler({}, { sampler: 'euler', schedule: 'default', steps: 1001 }), /at most num_train_timesteps/);
  assert.throws(() => createSampler({ timestep_spacing: 'leading' }, { sampler: 'euler', schedule: 'default', steps: 1000 }), /timestep 1000/);
  assert.throws(() => createSampler({ solver_order: 3 }, { sampler: 'dpmpp_2m_sde', schedule: 'default', steps: 10 }), /solver_order/);
  assert.throws(() => createSampler({ prediction_type: 'sample' }, { sampler: 'euler_ancestral', schedule: 'default', steps: 10 }), /sample/);
  assert.throws(() => createSampler([], { sampler: 'euler', schedule: 'default', steps: 10 }), /JSON object/);
});

test('options FuseGraph does not implement are refused by name, not misread', () => {
  assert.throws(() => resolveSamplerConfig('euler', { use_beta_sigmas: true }), /use_beta_sigmas.*not supported/);
  assert.throws(() => resolveSamplerConfig('euler', { interpolation_type: 'log_linear' }), /interpolation_type/);
  assert.throws(() => resolveSamplerConfig('dpmpp_2m', { variance_type: 'learned_range' }), /variance_type/);
  assert.throws(() => resolveSamplerConfig('unipc', { predict_x0: false }), /predict_x0/);
  // A class that does not take the key ignores it, as from_config does.
  assert.equal(resolveSamplerConfig('euler', { variance_type: 'learned_range', predict_x0: false }).prediction_type, 'epsilon');
});
