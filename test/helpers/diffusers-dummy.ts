/**
 * diffusers' scheduler test fixtures (tests/schedulers/test_schedulers.py): the deterministic sample and the dummy
 * model `sample * t / (t + 1)`, so that their full-loop sums and means port as they are.
 */
import type { SamplerRun } from '../../server/sd/schedulers/sampler-run.js';

/** torch.arange(768).reshape(3, 8, 8, 4) / 768, permuted to [4, 3, 8, 8]. */
export function dummySampleDeter(): Float32Array {
  const [B, C, H, W] = [4, 3, 8, 8];
  const out = new Float32Array(B * C * H * W);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) out[((b * C + c) * H + h) * W + w] = Math.fround((((c * H + h) * W + w) * B + b) / 768);
      }
    }
  }
  return out;
}

/** The dummy model, with t cast to the sample's float32 as the test's model does. */
export function dummyModel(sample: Float32Array, t: number): Float32Array {
  const tf = Math.fround(t);
  return sample.map((v) => Math.fround(Math.fround(v * tf) / Math.fround(tf + 1)));
}

/**
 * The tests' full loop: sample = dummy · init_noise_sigma, then per call scale_model_input → model → step.
 * `noise` supplies the ancestral/SDE noise per call.
 */
export function fullLoop(run: SamplerRun, noise?: (call: number) => Float32Array): { sum: number; mean: number; sample: Float32Array } {
  const x = dummySampleDeter().map((v) => v * run.initNoiseSigma);
  const input = new Float32Array(x.length);
  for (let call = 0; call < run.timesteps.length; call++) {
    run.modelInput(input, x, call);
    // diffusers' loop reassigns `sample` to the scaled input, so step() sees the scaled sample too.
    x.set(input);
    run.step(x, dummyModel(x, run.timesteps[call]!), call, noise?.(call));
  }
  let sum = 0;
  for (const v of x) sum += Math.abs(v);
  return { sum, mean: sum / x.length, sample: x };
}
