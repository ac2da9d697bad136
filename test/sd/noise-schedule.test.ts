import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeAlphasCumprod, computeBetas, torchCumprodF32, torchLinspaceF32, trainSigmas } from '../../server/sd/schedulers/noise-schedule.js';
import { parseSchedulerConfig } from '../../server/sd/scheduler.js';
import { TORCH_SCHEDULES } from '../helpers/torch-schedules.js';

function assertBitEqual(actual: Float32Array, expected: Float32Array, label: string): void {
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < expected.length; i++) {
    if (!Object.is(actual[i], expected[i])) assert.fail(`${label}[${i}]: ${actual[i]} vs torch ${expected[i]}`);
  }
}

test('betas, ᾱ (cumprod) and σ equal PyTorch bit for bit, for every beta schedule and zero-terminal-SNR', () => {
  assert.ok(Object.keys(TORCH_SCHEDULES).length >= 6);
  for (const [name, ref] of Object.entries(TORCH_SCHEDULES)) {
    const cfg = parseSchedulerConfig(ref.config, false);
    assertBitEqual(computeBetas(cfg), ref.betas, `${name} betas`);
    const ac = computeAlphasCumprod(cfg);
    assertBitEqual(ac, ref.alphas_cumprod, `${name} alphas_cumprod`);
    assertBitEqual(trainSigmas(ac), ref.sigmas, `${name} sigmas`);
  }
});

test('torch.linspace: the 8-lane blocks and the scalar tail are what make it exact', () => {
  const ref = TORCH_SCHEDULES.linear!.betas;
  const lin = torchLinspaceF32(0.0001, 0.02, 1000);
  assertBitEqual(lin, ref, 'linspace');
  // A plain per-element `start + i·step` (float32, unfused) differs from torch in hundreds of places.
  const f32 = Math.fround;
  const step = f32(f32(f32(0.02) - f32(0.0001)) / 999);
  let naive = 0;
  for (let i = 0; i < 1000; i++) {
    const v = i < 500 ? f32(f32(0.0001) + f32(step * i)) : f32(f32(0.02) - f32(step * (999 - i)));
    if (v !== ref[i]) naive++;
  }
  assert.ok(naive > 100, `naive linspace differs in ${naive} places`);
  assert.deepEqual(Array.from(torchLinspaceF32(2, 5, 1)), [2]);
});

test('cumprod accumulates in float64 and rounds each output (a float32 running product drifts)', () => {
  const v = Float32Array.from([0.9, 0.8, 0.7, 0.6]);
  const c = torchCumprodF32(v);
  let acc = 1;
  for (let i = 0; i < 4; i++) {
    acc *= v[i]!;
    assert.equal(c[i], Math.fround(acc));
  }
  // SD1 at t=999: float32 accumulation is off by ~1e-6 relative; torch's value is the fixture's.
  const sd1 = TORCH_SCHEDULES.sd1!.alphas_cumprod;
  let f32acc = 1;
  const betas = TORCH_SCHEDULES.sd1!.betas;
  for (const b of betas) f32acc = Math.fround(f32acc * Math.fround(1 - b));
  assert.notEqual(f32acc, sd1[999]);
  assert.equal(computeAlphasCumprod(parseSchedulerConfig(TORCH_SCHEDULES.sd1!.config, false))[999], sd1[999]);
});
