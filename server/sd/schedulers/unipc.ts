/**
 * diffusers' UniPCMultistepScheduler (predict_x0, bh1/bh2): a UniC corrector refines the previous step's result with
 * the new model output, then a UniP predictor of order up to solver_order takes the next step.
 */
import { modelOutputToX0, MultistepRun, vp } from './multistep.js';
import type { SamplerRun } from './sampler-run.js';
import { checkStepArgs } from './sampler-run.js';

/** Solves the small dense system A·x = b (Gaussian elimination with partial pivoting); torch.linalg.solve's job. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let col = 0; col < n; col++) {
    let p = col;
    for (let r = col + 1; r < n; r++) if (Math.abs(M[r]![col]!) > Math.abs(M[p]![col]!)) p = r;
    [M[col], M[p]] = [M[p]!, M[col]!];
    for (let r = col + 1; r < n; r++) {
      const f = M[r]![col]! / M[col]![col]!;
      for (let k = col; k <= n; k++) M[r]![k]! -= f * M[col]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= M[r]![k]! * x[k]!;
    x[r] = s / M[r]![r]!;
  }
  return x;
}

export class UniPcRun extends MultistepRun implements SamplerRun {
  readonly stochastic = false;
  private thisOrder = 0;
  private lastSample: Float32Array | null = null;

  /**
   * The coefficients both updates build: r_k = (λ_{s_k} − λ_{s0})/h for the earlier outputs (σ indices `prev`), the
   * matrix R of their powers and the vector b of φ-function terms, with hh = −h (predict_x0) and B(h) per solver_type.
   */
  private terms(lambdaT: number, lambdaS0: number, prev: number[], order: number): { rks: number[]; R: number[][]; b: number[]; hPhi1: number; Bh: number } {
    const h = lambdaT - lambdaS0;
    const rks = prev.map((si) => (vp(this.sigmas[si]!).lambda - lambdaS0) / h);
    rks.push(1);
    const hh = -h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let factorial = 1;
    const Bh = this.c.solver_type === 'bh1' ? hh : Math.expm1(hh);
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= order; i++) {
      R.push(rks.map((r) => r ** (i - 1)));
      b.push((hPhiK * factorial) / Bh);
      factorial *= i + 1;
      hPhiK = hPhiK / hh - 1 / factorial;
    }
    return { rks, R, b, hPhi1, Bh };
  }

  step(x: Float32Array, modelOutput: Float32Array, call: number): void {
    checkStepArgs('unipc', this, x, modelOutput, call);
    const c = this.c;
    const converted = new Float32Array(x.length);
    modelOutputToX0(converted, x, modelOutput, this.sigmas[call]!, c, this.batch);
    this.denoised = converted;
    if (call > 0 && !c.disable_corrector.includes(call - 1) && this.lastSample) this.correct(x, converted, call);
    this.outputs.shift();
    this.outputs.push(converted);
    const wanted = c.lower_order_final ? Math.min(c.solver_order, this.timesteps.length - call) : c.solver_order;
    this.thisOrder = Math.min(wanted, this.lowerOrderNums + 1);
    this.lastSample = Float32Array.from(x);
    this.predict(x, call, this.thisOrder);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums++;
  }

  /** UniP (multistep_uni_p_bh_update): x ← x_{t} predicted from the stored data predictions. */
  private predict(x: Float32Array, call: number, order: number): void {
    const m = this.outputs;
    const m0 = m[m.length - 1]!;
    const t = vp(this.sigmas[call + 1]!);
    const s0 = vp(this.sigmas[call]!);
    const prev = Array.from({ length: order - 1 }, (_, k) => call - (k + 1));
    const { rks, R, b, hPhi1, Bh } = this.terms(t.lambda, s0.lambda, prev, order);
    const rhos = order === 1 ? [] : order === 2 ? [0.5] : solve(R.slice(0, -1).map((row) => row.slice(0, -1)), b.slice(0, -1));
    const cx = t.sigma / s0.sigma;
    const cm = -t.alpha * hPhi1;
    const cr = -t.alpha * Bh;
    for (let i = 0; i < x.length; i++) {
      let res = 0;
      for (let k = 0; k < rhos.length; k++) res += rhos[k]! * ((m[m.length - 2 - k]![i]! - m0[i]!) / rks[k]!);
      x[i] = cx * x[i]! + cm * m0[i]! + cr * res;
    }
  }

  /** UniC (multistep_uni_c_bh_update): corrects this step's sample with the new data prediction. */
  private correct(x: Float32Array, modelT: Float32Array, call: number): void {
    const order = this.thisOrder;
    const m = this.outputs;
    const m0 = m[m.length - 1]!;
    const t = vp(this.sigmas[call]!);
    const s0 = vp(this.sigmas[call - 1]!);
    const prev = Array.from({ length: order - 1 }, (_, k) => call - (k + 2));
    const { rks, R, b, hPhi1, Bh } = this.terms(t.lambda, s0.lambda, prev, order);
    const rhos = order === 1 ? [0.5] : solve(R, b);
    const last = this.lastSample!;
    const cx = t.sigma / s0.sigma;
    const cm = -t.alpha * hPhi1;
    const cr = -t.alpha * Bh;
    const rhoT = rhos[rhos.length - 1]!;
    for (let i = 0; i < x.length; i++) {
      let res = 0;
      for (let k = 0; k < rhos.length - 1; k++) res += rhos[k]! * ((m[m.length - 2 - k]![i]! - m0[i]!) / rks[k]!);
      x[i] = cx * last[i]! + cm * m0[i]! + cr * (res + rhoT * (modelT[i]! - m0[i]!));
    }
  }
}
