import { encodePreview } from '../../sd/preview.js';
import { NumpyRandomState } from '../../sd/rng.js';
import type { Tensor32 } from '../../sd/sd-model.js';
import type { NoiseValue, RunContext, StepContext, StepFn } from '../types.js';

/** One sampler's arithmetic, as the shared loop drives it (DDIMStep's DDIM, the Sampler node's diffusers schedulers). */
export interface Stepper {
  /** The timestep of each model call, in call order. */
  readonly timesteps: ArrayLike<number>;
  /** Whether a step takes fresh Gaussian noise (η > 0, ancestral and SDE samplers). */
  readonly stochastic: boolean;
  /** ᾱ of the noise level of call `i`'s model input (PredictNoise converts v- and x0-predictions to ε with it). */
  alphaCumprod(i: number): number;
  /** The UNet's input at call `i`, from the current latent: `x` itself, or written into `out` and returned. */
  modelInput(out: Float32Array, x: Float32Array, i: number): Float32Array;
  /** Steps `x` in place with this call's noise prediction; writes the x̂0 estimate into `x0` when asked (previews). */
  step(x: Float32Array, eps: Float32Array, i: number, noise: Float32Array | undefined, x0: Float32Array | null): void;
}

/**
 * The sampling loop DDIMStep and Sampler share, so both behave alike between model calls: each call checks the
 * cancel signal and passes the step gate first (pause and cancel granularity is one model call), asks the NOISE
 * input for ε at the scheduler's timestep (per-step nodes memoised per call), emits a preview every
 * `ctx.previewEvery` calls and at the last, and a progress event after each call. Per-step noise comes from NumPy's
 * RandomState(seed), one standard normal per latent value and call.
 */
export async function sample(ctx: RunContext, noise: StepFn<NoiseValue>, stepper: Stepper, start: Tensor32, seed: number): Promise<Tensor32> {
  const x = start.data;
  const shape = start.shape;
  const steps = stepper.timesteps.length;
  const modelInput = new Float32Array(x.length);
  const rng = stepper.stochastic ? new NumpyRandomState(seed) : null;
  const stepNoise = rng ? new Float32Array(x.length) : undefined;
  const x0 = ctx.previewEvery > 0 ? new Float32Array(x.length) : null;
  for (let i = 0; i < steps; i++) {
    ctx.checkCancelled();
    await ctx.gateStep(i + 1, steps);
    const t = stepper.timesteps[i]!;
    // Consumers see what the UNet sees: the scaled model input and the (possibly fractional) timestep.
    const step: StepContext = {
      loop: ctx.node, index: i, steps, t, alphaCumprod: stepper.alphaCumprod(i), x: { data: stepper.modelInput(modelInput, x, i), shape }, memo: new Map(),
    };
    const eps = (await noise(step)).eps;
    if (eps.length !== x.length) throw ctx.error(`noise has ${eps.length} values but the latent has ${x.length}`, 'inputs.noise');
    if (rng && stepNoise) for (let j = 0; j < stepNoise.length; j++) stepNoise[j] = rng.standardNormal();
    const preview = x0 !== null && ((i + 1) % ctx.previewEvery === 0 || i === steps - 1);
    stepper.step(x, eps, i, stepNoise, preview ? x0 : null);
    if (preview) ctx.emit({ type: 'preview', node: ctx.node, step: i + 1, steps, png: await encodePreview(x0, shape) });
    ctx.emit({ type: 'progress', node: ctx.node, step: i + 1, steps, t });
  }
  return { data: x, shape };
}
