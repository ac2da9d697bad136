/**
 * diffusers' DPMSolverMultistepScheduler with algorithm_type "dpmsolver++" (DPM++ 2M) or "sde-dpmsolver++"
 * (DPM++ 2M SDE): multistep updates of the data prediction in λ = log α − log σ, orders 1–3 (SDE: 1–2).
 */
import type { ResolvedConfig } from './config.js';
import { modelOutputToX0, MultistepRun, vp } from './multistep.js';
import type { SamplerRun } from './sampler-run.js';
import { checkStepArgs } from './sampler-run.js';

export class DpmSolverRun extends MultistepRun implements SamplerRun {
  readonly stochastic: boolean;

  constructor(c: ResolvedConfig, steps: number, batch: number) {
    super(c, steps, batch);
    this.stochastic = c.algorithm_type === 'sde-dpmsolver++';
  }

  step(x: Float32Array, modelOutput: Float32Array, call: number, noise?: Float32Array): void {
    checkStepArgs(this.c.algorithm_type, this, x, modelOutput, call, noise);
    const c = this.c;
    const n = this.timesteps.length;
    // Lower orders at the end keep few-step runs stable; a final σ of 0 always ends with a first-order step.
    const lowerOrderFinal = call === n - 1 && (c.euler_at_final || (c.lower_order_final && n < 15) || c.final_sigmas_type === 'zero');
    const lowerOrderSecond = call === n - 2 && c.lower_order_final && n < 15;

    const m0 = new Float32Array(x.length);
    modelOutputToX0(m0, x, modelOutput, this.sigmas[call]!, c, this.batch);
    this.denoised = m0;
    this.outputs.shift();
    this.outputs.push(m0);

    const order = c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal
      ? 1
      : c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond
        ? 2
        : 3;
    this.update(x, call, order, noise);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
  }

  private update(x: Float32Array, call: number, order: number, noise?: Float32Array): void {
    const sde = this.stochastic;
    const t = vp(this.sigmas[call + 1]!);
    const s0 = vp(this.sigmas[call]!);
    const h = t.lambda - s0.lambda;
    const eh = Math.exp(-h);
    const e2h = Math.exp(-2 * h);
    // Coefficients of x, D0, D1, D2 and the noise.
    const cx = sde ? (t.sigma / s0.sigma) * eh : t.sigma / s0.sigma;
    const c0 = sde ? t.alpha * (1 - e2h) : -t.alpha * (eh - 1);
    const cn = sde ? t.sigma * Math.sqrt(1 - e2h) : 0;
    const m = this.outputs;
    const m0 = m[m.length - 1]!;
    const len = x.length;
    if (order === 1) {
      for (let i = 0; i < len; i++) x[i] = cx * x[i]! + c0 * m0[i]! + (sde ? cn * noise![i]! : 0);
      return;
    }
    const s1 = vp(this.sigmas[call - 1]!);
    const h0 = s0.lambda - s1.lambda;
    const r0 = h0 / h;
    const m1 = m[m.length - 2]!;
    if (order === 2) {
      let c1: number;
      if (this.c.solver_type === 'midpoint') c1 = 0.5 * c0;
      else c1 = sde ? t.alpha * ((1 - e2h) / (-2 * h) + 1) : t.alpha * ((eh - 1) / h + 1);
      for (let i = 0; i < len; i++) {
        const d1 = (1 / r0) * (m0[i]! - m1[i]!);
        x[i] = cx * x[i]! + c0 * m0[i]! + c1 * d1 + (sde ? cn * noise![i]! : 0);
      }
      return;
    }
    const s2 = vp(this.sigmas[call - 2]!);
    const h1 = s1.lambda - s2.lambda;
    const r1 = h1 / h;
    const m2 = m[m.length - 3]!;
    const c1 = t.alpha * ((eh - 1) / h + 1);
    const c2 = -t.alpha * ((eh - 1 + h) / (h * h) - 0.5);
    for (let i = 0; i < len; i++) {
      const d10 = (1 / r0) * (m0[i]! - m1[i]!);
      const d11 = (1 / r1) * (m1[i]! - m2[i]!);
      const d1 = d10 + (r0 / (r0 + r1)) * (d10 - d11);
      const d2 = (1 / (r0 + r1)) * (d10 - d11);
      x[i] = cx * x[i]! + c0 * m0[i]! + c1 * d1 + c2 * d2;
    }
  }
}
