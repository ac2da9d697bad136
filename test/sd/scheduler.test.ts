import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DDIMSchedule, parseSchedulerConfig, scheduleReport, SchedulerConfigSchema } from '../../server/sd/scheduler.js';
import { SD1_SCHEDULER_CONFIG } from '../../tools/tiny-models/make-tiny-model.js';
import { TORCH_SCHEDULES } from '../helpers/torch-schedules.js';

// ᾱ reference values are PyTorch's own (test/fixtures/torch-schedules.json); the rest come from the docs' tables and
// numpy; all are committed so CI needs no Python.

/** runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json as shipped (PNDM class, old clip/offset values). */
// The SD 1.x scheduler_config.json that the tiny test models ship.
const SD1_JSON = SD1_SCHEDULER_CONFIG;
const sd1 = parseSchedulerConfig(SD1_JSON);

function range(n: number, f: (i: number) => number): number[] {
  return Array.from({ length: n }, (_, i) => f(i));
}

test('config parsing: defaults, unknown keys, pipeline forcing, errors', () => {
  const d = parseSchedulerConfig({}, false);
  assert.equal(d.num_train_timesteps, 1000);
  assert.equal(d.beta_start, 0.0001);
  assert.equal(d.beta_end, 0.02);
  assert.equal(d.beta_schedule, 'linear');
  assert.equal(d.clip_sample, true);
  assert.equal(d.set_alpha_to_one, true);
  assert.equal(d.steps_offset, 0);
  assert.equal(d.prediction_type, 'epsilon');
  assert.equal(d.timestep_spacing, 'leading');
  assert.equal(d.rescale_betas_zero_snr, false);
  assert.equal(d.trained_betas, null);
  assert.equal(d.clip_sample_range, 1);

  const forced = parseSchedulerConfig({ steps_offset: 0, clip_sample: true });
  assert.equal(forced.steps_offset, 1);
  assert.equal(forced.clip_sample, false);

  assert.ok(!('_class_name' in sd1));
  assert.ok(!('skip_prk_steps' in sd1));
  assert.equal(SchedulerConfigSchema.safeParse({ beta_schedule: 'sigmoid' }).success, false);
  assert.throws(() => parseSchedulerConfig({ prediction_type: 'flow' }), /invalid scheduler config[\s\S]*prediction_type/);
  assert.throws(() => parseSchedulerConfig({ num_train_timesteps: 3, trained_betas: [0.1, 0.2] }), /trained_betas/);
  assert.throws(() => new DDIMSchedule(parseSchedulerConfig({ thresholding: true }), 10), /thresholding/);
});

test('SD1, N=100: timesteps 991..1 and final step to ᾱ_0', () => {
  const s = new DDIMSchedule(sd1, 100);
  assert.deepEqual(Array.from(s.timesteps), range(100, (i) => 991 - 10 * i));
  assert.equal(s.alphasCumprod.length, 1000);
  // float32(1 - β_0) with β_0 from the float32 linspace; ≈ 0.99915 (CompVis: 0.99914998)
  assert.equal(s.finalAlphaCumprod, 0.9991499781608582);
  assert.equal(s.alphasCumprod[0], 0.9991499781608582);
  assert.equal(s.prevAlphaAt(99), 0.9991499781608582);
  assert.equal(s.prevTimesteps[99], -9);
  assert.equal(s.prevAlphaAt(0), s.alphasCumprod[981]);
  assert.equal(s.alphaAt(0), s.alphasCumprod[991]);
});

test('alphas_cumprod is torch\'s, bit for bit, for every beta schedule (fixture from PyTorch itself)', () => {
  for (const [name, ref] of Object.entries(TORCH_SCHEDULES)) {
    assert.deepEqual(new DDIMSchedule(parseSchedulerConfig(ref.config, false), 1).alphasCumprod, ref.alphas_cumprod, name);
  }
  const a = new DDIMSchedule(sd1, 50).alphasCumprod;
  // torch 1.13 prints these for torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0)
  assert.equal(a[0], 0.9991499781608582);
  assert.equal(a[601], TORCH_SCHEDULES.sd1!.alphas_cumprod[601]);

  // MagicFusion / CompVis check values are float64 schedules printed to 8 decimals; torch's differs from float64 only
  // through the float32 betas and output rounding (docs §2.2), plus the 5e-9 print rounding.
  const magic: [number, number][] = [[1, 0.99829602], [601, 0.15981644], [851, 0.02307699], [991, 0.00513007]];
  for (const [i, e] of magic) {
    assert.ok(Math.abs(a[i]! - e) <= 1.7e-6 * e + 5e-9, `ᾱ[${i}] = ${a[i]} vs ${e}`);
  }
  const trained = new DDIMSchedule(parseSchedulerConfig({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.5] }), 1);
  // float64 running product of the float32 alphas, each output rounded once
  const al = [Math.fround(0.9), Math.fround(0.8), 0.5];
  assert.deepEqual(Array.from(trained.alphasCumprod), [Math.fround(al[0]!), Math.fround(al[0]! * al[1]!), Math.fround(al[0]! * al[1]! * al[2]!)]);
});

test('N=50 worked example: leading, trailing, linspace timesteps', () => {
  assert.deepEqual(Array.from(new DDIMSchedule(sd1, 50).timesteps), range(50, (i) => 981 - 20 * i));
  const trailing = new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 50);
  assert.deepEqual(Array.from(trailing.timesteps), range(50, (i) => 999 - 20 * i));
  const linspace = new DDIMSchedule({ ...sd1, timestep_spacing: 'linspace' }, 50);
  assert.deepEqual(Array.from(linspace.timesteps), [
    999, 979, 958, 938, 917, 897, 877, 856, 836, 816, 795, 775, 754, 734, 714, 693, 673, 652, 632, 612, 591, 571, 550, 530,
    510, 489, 469, 449, 428, 408, 387, 367, 347, 326, 306, 285, 265, 245, 224, 204, 183, 163, 143, 122, 102, 82, 61, 41, 20, 0,
  ]);
  // prev_t is t - floor(T/N) for every spacing, not the next scheduled timestep.
  const t30 = new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 30);
  assert.deepEqual(Array.from(t30.timesteps.slice(0, 3)), [999, 966, 932]);
  assert.equal(t30.prevTimesteps[1], 933);
  assert.equal(t30.prevAlphaAt(1), t30.alphasCumprod[933]);
});

test('other N, leading', () => {
  const ts = (n: number): number[] => Array.from(new DDIMSchedule(sd1, n).timesteps);
  assert.deepEqual(ts(30), range(30, (i) => 958 - 33 * i));
  assert.deepEqual(ts(25), range(25, (i) => 961 - 40 * i));
  assert.deepEqual(ts(20), range(20, (i) => 951 - 50 * i));
  assert.deepEqual(ts(10), range(10, (i) => 901 - 100 * i));
  assert.deepEqual(ts(1), [1]);
});

test('trailing uses round-half-even; the N+1 arange quirk is not replicated', () => {
  const t16 = new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 16);
  assert.deepEqual(Array.from(t16.timesteps), [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61]);
  // numpy gives 62 entries ending in -1 for N=61; the schedule keeps the 61 real ones.
  const t61 = new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 61);
  assert.equal(t61.timesteps.length, 61);
  assert.deepEqual(Array.from(t61.timesteps.slice(-2)), [32, 15]);
  assert.deepEqual(Array.from(new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 1).timesteps), [999]);
  assert.deepEqual(Array.from(new DDIMSchedule({ ...sd1, timestep_spacing: 'linspace' }, 1).timesteps), [0]);
});

test('eta=0 epsilon step equals c1·x + c2·ε of the docs table (2e-6 of the update size)', () => {
  const s = new DDIMSchedule(sd1, 50);
  // t, c1, c2 from docs/sd-onnx.md §2.6 (float64 CompVis schedule)
  const table: [number, number, number][] = [
    [981, 1.1228517, -0.12325201], [961, 1.11896411, -0.11945176], [501, 1.04845633, -0.05744199],
    [41, 1.01010016, -0.05973513], [21, 1.00909553, -0.10006354], [1, 1.00042762, -0.01214209],
  ];
  // The table is the float64 CompVis schedule and ours is torch's float32 one. c1 agrees to 1e-7, but c2 is a
  // cancellation and alone differs by up to 2.5e-5 relative (t=1), so the tolerance is 2e-6 of the size of the whole
  // update (worst observed 1.02e-6 at t=41), with no x = 0 entries.
  const x = Float32Array.from([1, -0.5, 0.25, 2, -1.5, 0.4, 0.7]);
  const eps = Float32Array.from([0.3, 1.2, -0.7, -2, 0.5, 1, 0.7]);
  const out = new Float32Array(x.length);
  for (const [t, c1, c2] of table) {
    const idx = (981 - t) / 20;
    assert.equal(s.timesteps[idx], t);
    s.step(out, eps, idx, x);
    for (let i = 0; i < x.length; i++) {
      const expected = c1 * x[i]! + c2 * eps[i]!;
      const scale = Math.abs(c1 * x[i]!) + Math.abs(c2 * eps[i]!);
      assert.ok(Math.abs(out[i]! - expected) <= 2e-6 * scale, `t=${t} i=${i}: ${out[i]} vs ${expected}`);
    }
  }
});

test('step may alias out and x; predictX0 matches the epsilon formula', () => {
  const s = new DDIMSchedule(sd1, 50);
  const x = Float32Array.from([0.5, -1, 2]);
  const eps = Float32Array.from([0.1, 0.2, -0.3]);
  const separate = new Float32Array(3);
  s.step(separate, eps, 10, x);
  const inPlace = Float32Array.from(x);
  s.step(inPlace, eps, 10, inPlace);
  assert.deepEqual(inPlace, separate);

  const x0 = new Float32Array(3);
  s.predictX0(x0, eps, 10, x);
  const a = s.alphaAt(10);
  for (let i = 0; i < 3; i++) {
    assert.equal(x0[i], Math.fround((x[i]! - Math.sqrt(1 - a) * eps[i]!) / Math.sqrt(a)));
  }
});

function closeF32(actual: number, expected: number, label: string): void {
  // The implementation folds the formulas into per-step coefficients; allow a couple of float32 ulps.
  const tol = 2 ** -22 * Math.max(Math.abs(expected), 1e-30);
  assert.ok(Math.abs(actual - expected) <= tol, `${label}: ${actual} vs ${expected}`);
}

test('v_prediction step against the hand formula', () => {
  const s = new DDIMSchedule({ ...sd1, prediction_type: 'v_prediction' }, 25);
  const x = Float32Array.from([0.9, -1.3, 0.05, 2.2]);
  const v = Float32Array.from([-0.4, 0.8, 1.5, -0.1]);
  const out = new Float32Array(4);
  const x0out = new Float32Array(4);
  for (const idx of [0, 12, 24]) {
    s.step(out, v, idx, x);
    s.predictX0(x0out, v, idx, x);
    const a = s.alphaAt(idx);
    const ap = s.prevAlphaAt(idx);
    for (let i = 0; i < 4; i++) {
      const x0 = Math.sqrt(a) * x[i]! - Math.sqrt(1 - a) * v[i]!;
      const e = Math.sqrt(a) * v[i]! + Math.sqrt(1 - a) * x[i]!;
      closeF32(out[i]!, Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * e, `step ${idx} i=${i}`);
      closeF32(x0out[i]!, x0, `x0 ${idx} i=${i}`);
    }
  }
});

test('sample prediction and clip_sample', () => {
  const cfg = parseSchedulerConfig({ ...SD1_JSON, prediction_type: 'sample', clip_sample: true, clip_sample_range: 1.5 }, false);
  const s = new DDIMSchedule(cfg, 20);
  const x = Float32Array.from([0.3, -2, 1]);
  const m = Float32Array.from([2, -0.5, -3]); // predicted x0; 2 and -3 get clipped to ±1.5
  const out = new Float32Array(3);
  const idx = 5;
  s.step(out, m, idx, x);
  const a = s.alphaAt(idx);
  const ap = s.prevAlphaAt(idx);
  for (let i = 0; i < 3; i++) {
    const e = (x[i]! - Math.sqrt(a) * m[i]!) / Math.sqrt(1 - a); // ε from the unclipped x0
    const x0 = Math.min(1.5, Math.max(-1.5, m[i]!));
    closeF32(out[i]!, Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * e, `i=${i}`);
  }
  const x0out = new Float32Array(3);
  s.predictX0(x0out, m, idx, x);
  assert.deepEqual(Array.from(x0out), [1.5, -0.5, -1.5]);
});

test('eta > 0 adds σ·z (σ from the docs table) and requires noise', () => {
  const s = new DDIMSchedule(sd1, 50);
  const x = Float32Array.from([1, -0.5, 0.25]);
  const eps = Float32Array.from([0.3, 1.2, -0.7]);
  const z = Float32Array.from([0.5, -1, 2]);
  const out = new Float32Array(3);
  s.step(out, eps, 0, x, 1, z); // t = 981, σ(eta=1) = 0.45446327
  const a = s.alphaAt(0);
  const ap = s.prevAlphaAt(0);
  const sigma = Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
  assert.ok(Math.abs(sigma - 0.45446327) < 1e-6 * 0.45446327);
  for (let i = 0; i < 3; i++) {
    const x0 = (x[i]! - Math.sqrt(1 - a) * eps[i]!) / Math.sqrt(a);
    closeF32(out[i]!, Math.sqrt(ap) * x0 + Math.sqrt(1 - ap - sigma * sigma) * eps[i]! + sigma * z[i]!, `i=${i}`);
  }
  const other = new Float32Array(3);
  s.step(other, eps, 0, x, 1, Float32Array.from([0, 0, 0]));
  assert.notDeepEqual(other, out);

  const det = new Float32Array(3);
  s.step(det, eps, 0, x);
  const detWithNoise = new Float32Array(3);
  s.step(detWithNoise, eps, 0, x, 0, z);
  assert.deepEqual(detWithNoise, det);

  assert.throws(() => s.step(out, eps, 0, x, 0.5), /noise/);
  assert.throws(() => s.step(out, eps, 0, x, 0.5, new Float32Array(2)), RangeError);
  assert.throws(() => s.step(out, eps, 0, x, -1), RangeError);
  assert.throws(() => s.step(out, eps, 0, x, 5, z), /too large/);
  assert.throws(() => s.step(out, new Float32Array(2), 0, x), RangeError);
  assert.throws(() => s.step(out, eps, 50, x), RangeError);
});

test('bad N is rejected with a clear RangeError', () => {
  assert.throws(() => new DDIMSchedule(sd1, 0), (e) => e instanceof RangeError && /between 1 and num_train_timesteps/.test(e.message));
  assert.throws(() => new DDIMSchedule(sd1, 2.5), RangeError);
  assert.throws(() => new DDIMSchedule(sd1, 1001), RangeError);
  // leading + steps_offset 1 pushes the top timestep to 1000
  assert.throws(() => new DDIMSchedule(sd1, 1000), (e) => e instanceof RangeError && /timestep 1000/.test(e.message));
  assert.equal(new DDIMSchedule(sd1, 999).timesteps[0], 999);
  assert.equal(new DDIMSchedule({ ...sd1, timestep_spacing: 'trailing' }, 1000).timesteps.length, 1000);
});

test('scheduleReport shape', () => {
  const r = scheduleReport(sd1, 10);
  assert.deepEqual(Object.keys(r).sort(), ['alphas_cumprod', 'prev_alphas_cumprod', 'timesteps']);
  assert.deepEqual(r.timesteps, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  assert.equal(r.alphas_cumprod.length, 10);
  assert.equal(r.prev_alphas_cumprod.length, 10);
  assert.equal(r.alphas_cumprod[3], TORCH_SCHEDULES.sd1!.alphas_cumprod[601]);
  assert.equal(r.prev_alphas_cumprod[9], 0.9991499781608582);
  assert.equal(r.prev_alphas_cumprod[0], r.alphas_cumprod[1]);
  assert.ok(r.alphas_cumprod.every((v) => typeof v === 'number'));
});
