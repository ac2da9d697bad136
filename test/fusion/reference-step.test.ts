/**
 * Proof that the executor's fused sampling is the MagicFusion spec (docs/magicfusion-snb.md §1.2–§1.3, §2).
 *
 * The reference below is written from the spec alone, as plain loops: it does not import the engine's sampler
 * (server/sampler) or scheduler (server/sd/scheduler). It runs the two tiny models' ONNX files through its own
 * onnxruntime-node sessions; only the CLIP tokenizer (token ids) and the NumPy RNG (x_T, also checked against the
 * latent the graph saved) are shared with the engine.
 *
 * Spec points reproduced here:
 *  - conditioning from the BASE model's text encoder only: prompt → BASE, other prompt → OTHER, "" → uncond (Q5);
 *  - one batched UNet call per model, rows [uncond × B, cond × B], the same x_t for both models, guidance s = 10;
 *  - R_B = s(c_B − u_B) and R_O = s(c_O − u_B) (quirk Q1: OTHER's saliency uses BASE's uncond);
 *  - |R|, 4×4 average pool stride 1 zero pad 1 (always /16), bilinear resize (H−1)→H align_corners=False, per
 *    channel; then the channel mean; softmax over H·W per sample of k·L; M = 1[softmax_O > softmax_B] (ties → BASE);
 *  - eps = (1−M)·eps_B + M·eps_O with each model's own CFG noise; window on the DDPM t with a strict '>';
 *  - DDIM η = 0, leading timesteps t = i·(1000//N) + 1, prev_t = t − 1000//N, ᾱ from the scaled_linear formula,
 *    ᾱ_0 (not 1) once prev_t < 0.
 *
 * Precision. Arithmetic is float64; tensors are stored as float32 where a float32 pipeline stores them (UNet outputs,
 * CFG noises, blended ε, saliency maps, x after each step), and ᾱ is PyTorch's own float32 schedule as diffusers has
 * it (test/fixtures/torch-schedules.json). That makes the comparison at 1e-5 meaningful: these tiny random networks
 * at guidance 10 amplify rounding strongly (a 6e-8 relative change of x_T moves x after 4 steps by ~3e-5, measured in
 * the "float64 ᾱ" test), so a reference that rounds differently can only agree to ~1e-4 after several steps. With the
 * float64 ᾱ of CompVis (≤1.63e-6 relative away) the agreement is checked at 1e-4.
 *
 * Per-step check (how the first step's ε is seen): the graph's only output is x after the last step, so runs with
 * steps = 1 are used. With timestep_spacing "trailing" (a copy of BASE whose scheduler config differs, used only by
 * DDIMStep) the single step is t = 999 → ᾱ_0, the noisiest step, where x_prev = c1·x_T + c2·ε with |c2| ≈ 14.6.
 * ε is then recovered from the saved x_prev as (x_prev − c1·x_T)/c2 (errors shrink by |c2|), compared with the
 * reference ε at 1e-5, and the model chosen at each pixel (the mask) is read off it. A second 1-step run with the
 * default leading spacing (t = 1 → ᾱ_0) checks the final-step rule.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import * as ort from 'onnxruntime-node';

import type { Graph } from '../../nodes/graph-format.js';
import { executeGraph } from '../../server/execution/executor.js';
import type { RunResult } from '../../server/engine/events.js';
import { ModelManager } from '../../server/sd/model-manager.js';
import { decodeNpy } from '../../server/sd/npy.js';
import { randnFloat32 } from '../../server/sd/rng.js';
import { ClipTokenizer } from '../../server/sd/tokenizer.js';
import { writeTinyModel } from '../../tools/tiny-models/make-tiny-model.js';
import { TORCH_SCHEDULES } from '../helpers/torch-schedules.js';
import { snbGraph } from '../helpers/graphs.js';

const GUIDANCE = 10;
const SEED = 123;
const LATENT = 64; // latent H = W, as MagicFusion hard-codes; image 512×512 at VAE factor 8
const CHANNELS = 4;
const PROMPT_BASE = 'A lion with a crown on his head';
const PROMPT_OTHER = 'a cartoon lion, anime style, golden crown';
const PROMPT_THIRD = 'a lion with a crown, oil painting';
const HIDDEN = 32; // tiny-model default text width
const THREADS = 1;
const TOL = 1e-5; // |engine − reference| ≤ TOL + TOL·|reference|

let tmp: string;
let modelsRoot: string;
let models: ModelManager;
let tokenizer: ClipTokenizer;
let baseTextEncoder: ort.InferenceSession;
let baseUnet: ort.InferenceSession;
let otherUnet: ort.InferenceSession;
let thirdUnet: ort.InferenceSession;

const sessionOptions: ort.InferenceSession.SessionOptions = {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  intraOpNumThreads: THREADS,
  executionMode: 'sequential',
};

before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'fusegraph-reference-'));
  modelsRoot = path.join(tmp, 'models');
  // Two different networks (different seeds); base-trailing has BASE's weights and only a different scheduler config.
  await writeTinyModel(path.join(modelsRoot, 'base'), { seed: 1001 });
  await writeTinyModel(path.join(modelsRoot, 'other'), { seed: 2002 });
  await writeTinyModel(path.join(modelsRoot, 'third'), { seed: 3003 });
  await writeTinyModel(path.join(modelsRoot, 'base-trailing'), { seed: 1001, schedulerConfig: { timestep_spacing: 'trailing' } });
  models = new ModelManager({ threads: THREADS });
  tokenizer = await ClipTokenizer.fromFolder(path.join(modelsRoot, 'base', 'tokenizer'));
  const open = (model: string, part: string): Promise<ort.InferenceSession> =>
    ort.InferenceSession.create(path.join(modelsRoot, model, part, 'model.onnx'), sessionOptions);
  [baseTextEncoder, baseUnet, otherUnet, thirdUnet] = await Promise.all([
    open('base', 'text_encoder'), open('base', 'unet'), open('other', 'unet'), open('third', 'unet'),
  ]);
});

after(async () => {
  await Promise.all([baseTextEncoder?.release(), baseUnet?.release(), otherUnet?.release(), thirdUnet?.release()]);
  await models?.dispose();
  await rm(tmp, { recursive: true, force: true });
});

// --- the reference -------------------------------------------------------------------------------------------------

interface SchedulerJson {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: string;
  timestep_spacing?: string;
}

async function readScheduler(model: string): Promise<SchedulerJson> {
  return JSON.parse(await readFile(path.join(modelsRoot, model, 'scheduler', 'scheduler_config.json'), 'utf8')) as SchedulerJson;
}

/**
 * ᾱ[i] = Π_{k≤i} (1 − β_k), β_k = (√β0 + k·(√β1 − √β0)/(T−1))² ("scaled_linear").
 *
 * precision 'float64': the formula in doubles (CompVis computes it so; the spec's check values come from it).
 * precision 'float32': ᾱ as diffusers' DDIMScheduler has it, PyTorch's own float32 values for this config
 * (test/fixtures/torch-schedules.json, written by PyTorch: float32 linspace, β = l², α = 1 − β, cumprod). The two
 * differ by ≤1.63e-6 relative; see the test "float64 ᾱ" below for what that does to x.
 */
function alphasCumprod(cfg: SchedulerJson, precision: 'float32' | 'float64'): Float64Array {
  assert.equal(cfg.beta_schedule, 'scaled_linear');
  const T = cfg.num_train_timesteps;
  const out = new Float64Array(T);
  if (precision === 'float64') {
    const s0 = Math.sqrt(cfg.beta_start);
    const s1 = Math.sqrt(cfg.beta_end);
    let prod = 1;
    for (let k = 0; k < T; k++) {
      const b = (s0 + (k * (s1 - s0)) / (T - 1)) ** 2;
      prod *= 1 - b;
      out[k] = prod;
    }
    return out;
  }
  const torch = TORCH_SCHEDULES.sd1!;
  assert.deepEqual([cfg.beta_start, cfg.beta_end, T], [torch.config.beta_start, torch.config.beta_end, torch.config.num_train_timesteps]);
  return Float64Array.from(torch.alphas_cumprod);
}

/** DDIM timesteps, high to low: leading + steps_offset 1 (t = i·(T//N) + 1), or trailing (t = T − i·T/N − 1; T % N = 0 here). */
function timesteps(cfg: SchedulerJson, n: number): number[] {
  const T = cfg.num_train_timesteps;
  const out: number[] = [];
  if ((cfg.timestep_spacing ?? 'leading') === 'trailing') {
    assert.equal(T % n, 0, 'reference trailing spacing only for N dividing T');
    for (let i = 0; i < n; i++) out.push(T - (i * T) / n - 1);
  } else {
    const r = Math.floor(T / n);
    for (let i = n - 1; i >= 0; i--) out.push(i * r + 1);
  }
  return out;
}

async function encode(text: string): Promise<Float32Array> {
  const ids = tokenizer.encodePadded(text);
  const out = await baseTextEncoder.run({ input_ids: new ort.Tensor('int32', Int32Array.from(ids), [1, ids.length]) });
  return out['last_hidden_state']!.data as Float32Array;
}

/** One UNet call on [x × B ; x × B] with rows [uncond × B ; cond × B]; returns (uncond, cond), each [B,C,H,W]. */
async function unet(session: ort.InferenceSession, x: Float32Array, batch: number, t: number, uc: Float32Array, c: Float32Array) {
  const size = x.length;
  const sample = new Float32Array(2 * size);
  sample.set(x, 0);
  sample.set(x, size);
  const per = uc.length;
  const ehs = new Float32Array(2 * batch * per);
  for (let b = 0; b < batch; b++) {
    ehs.set(uc, b * per);
    ehs.set(c, (batch + b) * per);
  }
  const out = await session.run({
    sample: new ort.Tensor('float32', sample, [2 * batch, CHANNELS, LATENT, LATENT]),
    timestep: new ort.Tensor('float32', new Float32Array(2 * batch).fill(t), [2 * batch]),
    encoder_hidden_states: new ort.Tensor('float32', ehs, [2 * batch, per / HIDDEN, HIDDEN]),
  });
  const e = out['out_sample']!.data as Float32Array;
  return { u: e.subarray(0, size), c: e.subarray(size) };
}

/** AvgPool2d(4, stride 1, padding 1), count_include_pad: H×W → (H−1)×(W−1), always /16. */
function avgPool(src: Float64Array, h: number, w: number): Float64Array {
  const out = new Float64Array((h - 1) * (w - 1));
  for (let p = 0; p < h - 1; p++) {
    for (let q = 0; q < w - 1; q++) {
      let s = 0;
      for (let di = 0; di < 4; di++) {
        for (let dj = 0; dj < 4; dj++) {
          const r = p + di - 1;
          const c = q + dj - 1;
          if (r >= 0 && r < h && c >= 0 && c < w) s += src[r * w + c]!;
        }
      }
      out[p * (w - 1) + q] = s / 16;
    }
  }
  return out;
}

/** Bilinear, align_corners=False: src = (i+0.5)·I/O − 0.5 clamped ≥ 0, i0 = floor, i1 = min(i0+1, I−1). */
function resize(src: Float64Array, ih: number, iw: number, oh: number, ow: number): Float64Array {
  const index = (o: number, size: number, outSize: number): [number, number, number] => {
    const s = Math.max((o + 0.5) * (size / outSize) - 0.5, 0);
    const i0 = Math.min(Math.floor(s), size - 1);
    return [i0, Math.min(i0 + 1, size - 1), s - i0];
  };
  const out = new Float64Array(oh * ow);
  for (let i = 0; i < oh; i++) {
    const [r0, r1, ly] = index(i, ih, oh);
    for (let j = 0; j < ow; j++) {
      const [c0, c1, lx] = index(j, iw, ow);
      const top = src[r0 * iw + c0]! * (1 - lx) + src[r0 * iw + c1]! * lx;
      const bottom = src[r1 * iw + c0]! * (1 - lx) + src[r1 * iw + c1]! * lx;
      out[i * ow + j] = top * (1 - ly) + bottom * ly;
    }
  }
  return out;
}

/**
 * Per sample: softmax over H·W of k · mean_c(Resize(AvgPool(|s·(cond − uncond)|))), blurring each channel first.
 * Computed in float64; the probabilities are then stored as float32, as a float32 tensor holds them.
 */
function saliency(cond: Float32Array, uncond: Float32Array, batch: number, k: number): Float64Array[] {
  const hw = LATENT * LATENT;
  const maps: Float64Array[] = [];
  for (let b = 0; b < batch; b++) {
    const mean = new Float64Array(hw);
    for (let ch = 0; ch < CHANNELS; ch++) {
      const base = (b * CHANNELS + ch) * hw;
      const a = new Float64Array(hw);
      for (let p = 0; p < hw; p++) a[p] = Math.abs(GUIDANCE * (cond[base + p]! - uncond[base + p]!));
      const blurred = resize(avgPool(a, LATENT, LATENT), LATENT - 1, LATENT - 1, LATENT, LATENT);
      for (let p = 0; p < hw; p++) mean[p]! += blurred[p]! / CHANNELS;
    }
    let max = -Infinity;
    for (let p = 0; p < hw; p++) max = Math.max(max, k * mean[p]!);
    let sum = 0;
    const e = new Float64Array(hw);
    for (let p = 0; p < hw; p++) {
      e[p] = Math.exp(k * mean[p]! - max);
      sum += e[p]!;
    }
    for (let p = 0; p < hw; p++) e[p] = Math.fround(e[p]! / sum);
    maps.push(e);
  }
  return maps;
}

interface Arrangement {
  readonly steps: number;
  /** 1: BASE alone while t > switchT, then SNB. 2: SNB while t > switchT, then BASE alone. */
  readonly mode: 1 | 2;
  readonly switchT: number;
  readonly kBase: number;
  readonly kOther: number;
  readonly blend: 'argmax' | 'soft';
  readonly batch: number;
  /** Model whose scheduler config DDIMStep uses (BASE's weights either way). */
  readonly scheduler: 'base' | 'base-trailing';
  /** Blend a third model (BlendNoise.c; its saliency with k = kOther against BASE's uncond). */
  readonly third?: boolean;
}

/** How the reference rounds; the defaults are a float32 pipeline's (see reference()). */
interface Precision {
  readonly alphas: 'float32' | 'float64';
  /** Relative perturbation of x_T, to measure how strongly the trajectory amplifies rounding. */
  readonly perturb?: number;
}

interface StepRecord {
  readonly t: number;
  readonly fused: boolean;
  readonly x: Float32Array;
  readonly eps: Float64Array;
  readonly epsBase: Float64Array;
  readonly epsOther: Float64Array;
  /** Index of the model whose noise was taken (argmax: 0 BASE, 1 OTHER, 2 THIRD), per sample and pixel. */
  readonly mask: Uint8Array | null;
  /** Smallest (largest − second largest saliency) / largest over the pixels: how far the mask is from a tie. */
  readonly margin: number;
}

/**
 * The spec's sampling loop. Arithmetic is float64; tensors are stored as float32 where a float32 pipeline stores
 * them (UNet outputs, each model's CFG noise ε, the blended ε, the saliency maps, x after every step), which is what
 * the spec's full-precision path does (§1.3: "the latent x and the DDIM update stay in fp32").
 */
async function reference(arr: Arrangement, prec: Precision = { alphas: 'float32' }): Promise<{ x: Float32Array; records: StepRecord[]; fusedSteps: number }> {
  const cfg = await readScheduler(arr.scheduler);
  const alphas = alphasCumprod(cfg, prec.alphas);
  const ts = timesteps(cfg, arr.steps);
  const ratio = Math.floor(cfg.num_train_timesteps / arr.steps);
  const [uc, cBase, cOther, cThird] = [await encode(''), await encode(PROMPT_BASE), await encode(PROMPT_OTHER), await encode(PROMPT_THIRD)];
  const hw = LATENT * LATENT;
  const size = arr.batch * CHANNELS * hw;
  let x = randnFloat32(SEED, [arr.batch, CHANNELS, LATENT, LATENT]);
  if (prec.perturb) x = x.map((v, i) => v * (1 + prec.perturb! * ((i % 3) - 1)));
  const records: StepRecord[] = [];
  let fusedSteps = 0;
  const cfgNoise = (r: { u: Float32Array; c: Float32Array }): Float64Array => {
    const e = new Float64Array(size);
    for (let i = 0; i < size; i++) e[i] = Math.fround(r.u[i]! + GUIDANCE * (r.c[i]! - r.u[i]!));
    return e;
  };
  for (const t of ts) {
    const fused = arr.mode === 1 ? !(t > arr.switchT) : t > arr.switchT;
    const B = await unet(baseUnet, x, arr.batch, t, uc, cBase);
    const epsBase = cfgNoise(B);
    let epsOther = epsBase;
    let eps = epsBase;
    let mask: Uint8Array | null = null;
    let margin = Infinity;
    if (fused) {
      fusedSteps++;
      const O = await unet(otherUnet, x, arr.batch, t, uc, cOther);
      epsOther = cfgNoise(O);
      const noises = [epsBase, epsOther];
      const sals = [saliency(B.c, B.u, arr.batch, arr.kBase), saliency(O.c, B.u, arr.batch, arr.kOther)]; // Q1: BASE's uncond
      if (arr.third) {
        const T3 = await unet(thirdUnet, x, arr.batch, t, uc, cThird);
        noises.push(cfgNoise(T3));
        sals.push(saliency(T3.c, B.u, arr.batch, arr.kOther));
      }
      eps = new Float64Array(size);
      mask = new Uint8Array(arr.batch * hw);
      for (let b = 0; b < arr.batch; b++) {
        for (let p = 0; p < hw; p++) {
          const s = sals.map((m) => m[b]![p]!);
          // torch.argmax over the stacked maps: the first index of the maximum.
          const take = s.indexOf(Math.max(...s));
          const sorted = [...s].sort((u, v) => v - u);
          margin = Math.min(margin, (sorted[0]! - sorted[1]!) / sorted[0]!);
          mask[b * hw + p] = take;
          const total = s.reduce((u, v) => u + v, 0);
          const w = s.map((v, k) => (arr.blend === 'soft' ? v / total : k === take ? 1 : 0));
          for (let ch = 0; ch < CHANNELS; ch++) {
            const i = (b * CHANNELS + ch) * hw + p;
            eps[i] = Math.fround(noises.reduce((acc, n, k) => acc + w[k]! * n[i]!, 0));
          }
        }
      }
    }
    const a = alphas[t]!;
    const prev = t - ratio;
    const ap = prev >= 0 ? alphas[prev]! : alphas[0]!;
    const next = new Float32Array(size);
    for (let i = 0; i < size; i++) {
      const x0 = (x[i]! - Math.sqrt(1 - a) * eps[i]!) / Math.sqrt(a);
      next[i] = Math.sqrt(ap) * x0 + Math.sqrt(1 - ap) * eps[i]!;
    }
    records.push({ t, fused, x: next, eps, epsBase, epsOther, mask, margin });
    x = next;
  }
  return { x, records, fusedSteps };
}

// --- the graph -----------------------------------------------------------------------------------------------------

function fusionGraph(arr: Arrangement): Graph {
  return snbGraph({
    base: 'base', other: 'other', ...(arr.scheduler === 'base' ? {} : { scheduler: arr.scheduler }),
    promptBase: PROMPT_BASE, promptOther: PROMPT_OTHER, seed: SEED, size: LATENT * 8, batch: arr.batch, guidance: GUIDANCE,
    kBase: arr.kBase, kOther: arr.kOther, blend: arr.blend, mode: arr.mode, switchT: arr.switchT, steps: arr.steps, saveStart: true,
    ...(arr.third ? { third: { model: 'third', prompt: PROMPT_THIRD } } : {}),
  });
}

async function runGraph(arr: Arrangement, name: string): Promise<{ x: Float32Array; xT: Float32Array; shape: number[]; result: RunResult }> {
  const output = path.join(tmp, 'out', name);
  const result = await executeGraph(fusionGraph(arr), { roots: { models: modelsRoot, input: path.join(tmp, 'in'), output }, models });
  const x = decodeNpy(await readFile(path.join(output, 'x.npy')));
  const xT = decodeNpy(await readFile(path.join(output, 'xT.npy')));
  return { x: x.data, xT: xT.data, shape: x.shape, result };
}

function callsOf(result: RunResult, model: string): number {
  const key = `${path.join(modelsRoot, model)}|cpu`;
  assert.ok(key in result.unetCalls, `no UNet count for ${key}: ${JSON.stringify(result.unetCalls)}`);
  return result.unetCalls[key]!;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, tolerance = TOL): number {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    const tol = tolerance + tolerance * Math.abs(expected[i]!);
    if (!(d <= tol)) assert.fail(`${what}[${i}]: engine ${actual[i]}, reference ${expected[i]} (|diff| ${d} > ${tol})`);
    worst = Math.max(worst, d / (1 + Math.abs(expected[i]!)));
  }
  return worst;
}

type Reference = Awaited<ReturnType<typeof reference>>;
type Run = Awaited<ReturnType<typeof runGraph>>;

/** Checks the run against the reference; returns both and a one-line summary. */
async function compareArrangement(
  arr: Arrangement,
  name: string,
  mask: 'mixed' | 'all-base' = 'mixed',
): Promise<{ summary: string; ref: Reference; run: Run }> {
  const [ref, run] = await Promise.all([reference(arr), runGraph(arr, name)]);
  assert.deepEqual(run.shape, [arr.batch, CHANNELS, LATENT, LATENT]);
  assert.deepEqual(run.xT, randnFloat32(SEED, [arr.batch, CHANNELS, LATENT, LATENT]), 'x_T is RandomState(123).standard_normal');
  // BASE at every step; OTHER only at the fused steps (the branch a switch does not take is not computed).
  assert.equal(callsOf(run.result, 'base'), arr.steps);
  assert.equal(callsOf(run.result, 'other'), ref.fusedSteps);
  if (arr.third) assert.equal(callsOf(run.result, 'third'), ref.fusedSteps);
  const fused = ref.records.filter((r) => r.fused);
  assert.ok(fused.length > 0, 'the arrangement fuses at some step');
  // Pixels not won by BASE, per fused step.
  const wins = fused.map((r) => r.mask!.reduce((s, v) => s + (v > 0 ? 1 : 0), 0));
  if (mask === 'mixed') {
    // No pixel may be within float32 rounding (6e-8) of a tie, or the two summation orders could legitimately flip it.
    for (const r of fused) assert.ok(r.margin > 1e-6, `t=${r.t}: softmax maps within ${r.margin} of a tie`);
    // Both models win pixels, so the comparison would see a swapped or constant mask.
    assert.ok(wins.some((w) => w > 0 && w < arr.batch * LATENT * LATENT), `OTHER wins ${wins.join(', ')} pixels`);
  } else {
    for (const r of fused) assert.equal(r.margin, 0, 'every pixel is an exact tie');
    assert.deepEqual(wins, fused.map(() => 0));
  }
  const worst = assertClose(run.x, ref.x, `${name}: x after ${arr.steps} steps`);
  const summary =
    `${name}: t = ${ref.records.map((r) => `${r.t}${r.fused ? '*' : ''}`).join(', ')} (* fused); OTHER wins ${wins.join('/')} px; ` +
    `max |Δx|/(1+|x|) = ${worst.toExponential(2)}; min tie margin ${Math.min(...fused.map((r) => r.margin)).toExponential(2)}`;
  return { summary, ref, run };
}

// --- tests ---------------------------------------------------------------------------------------------------------

describe('fused sampling through executeGraph equals the spec reference', () => {
  test('reference sanity: ᾱ from the scaled_linear formula gives the specs\' check values; DDIM timesteps', async () => {
    const a = alphasCumprod(await readScheduler('base'), 'float64');
    // docs/sd-onnx.md §2.2 reference values (float64) and magicfusion-snb.md §3 check values.
    assert.ok(Math.abs(a[0]! - 0.99915) < 1e-12);
    assert.ok(Math.abs(a[1]! - 0.9982960278) < 1e-9);
    assert.ok(Math.abs(a[501]! - 0.2749990669) < 1e-9);
    assert.ok(Math.abs(a[981]! - 0.0057755001) < 1e-9);
    assert.ok(Math.abs(a[601]! - 0.15981644) < 1e-8);
    assert.ok(Math.abs(a[991]! - 0.00513007) < 1e-8);
    const a32 = alphasCumprod(await readScheduler('base'), 'float32');
    // torch's float32 ᾱ is within ≈1.6e-6 relative of float64 everywhere (1.63e-6 at ᾱ[946]).
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a32[i]! / a[i]! - 1) <= 2e-6, `ᾱ[${i}]: ${a32[i]} vs ${a[i]}`);
    assert.deepEqual(timesteps(await readScheduler('base'), 4), [751, 501, 251, 1]);
    assert.deepEqual(timesteps(await readScheduler('base-trailing'), 1), [999]);
  });

  test('mode 2 (cross-domain arrangement): SNB for t > 251 (strict: 251 itself is BASE alone), then BASE alone; N = 4, argmax, kg = ke = 1', async (t) => {
    t.diagnostic(
      (await compareArrangement({ steps: 4, mode: 2, switchT: 251, kBase: 1, kOther: 1, blend: 'argmax', batch: 1, scheduler: 'base' }, 'mode2')).summary,
    );
  });

  test('mode 1 (expert-first arrangement): BASE alone for t > 501 (strict: 501 itself fuses), then SNB; N = 4, kg = 2, ke = 0.5, batch 2', async (t) => {
    t.diagnostic(
      (await compareArrangement({ steps: 4, mode: 1, switchT: 501, kBase: 2, kOther: 0.5, blend: 'argmax', batch: 2, scheduler: 'base' }, 'mode1')).summary,
    );
  });

  test('soft blend (FuseGraph extension): w = sal_O / (sal_B + sal_O); N = 4, mode 2, switch 251', async (t) => {
    t.diagnostic(
      (await compareArrangement({ steps: 4, mode: 2, switchT: 251, kBase: 1, kOther: 1, blend: 'soft', batch: 1, scheduler: 'base' }, 'soft')).summary,
    );
  });

  test('three models (BlendNoise.c): argmax over all three saliencies, ties to the earliest; N = 4, mode 2, switch 251', async (t) => {
    const { summary, ref } = await compareArrangement(
      { steps: 4, mode: 2, switchT: 251, kBase: 1, kOther: 1, blend: 'argmax', batch: 1, scheduler: 'base', third: true },
      'three-argmax',
    );
    // Each of the three models wins pixels at some fused step.
    const won = new Set(ref.records.filter((r) => r.fused).flatMap((r) => Array.from(r.mask!)));
    assert.deepEqual([...won].sort(), [0, 1, 2]);
    t.diagnostic(summary);
  });

  test('three models, soft: weights s_k / Σ s over all three; N = 4, mode 2, switch 251', async (t) => {
    t.diagnostic(
      (await compareArrangement({ steps: 4, mode: 2, switchT: 251, kBase: 1, kOther: 1, blend: 'soft', batch: 1, scheduler: 'base', third: true }, 'three-soft')).summary,
    );
  });

  test("first step's ε and mask: one step at t = 999 (trailing spacing), recovered from x_{t-1}", async (t) => {
    const arr: Arrangement = { steps: 1, mode: 2, switchT: 600, kBase: 1, kOther: 1, blend: 'argmax', batch: 1, scheduler: 'base-trailing' };
    const { summary, ref, run } = await compareArrangement(arr, 'one-step-999');
    const [rec] = ref.records;
    assert.ok(rec && rec.t === 999 && rec.fused && rec.mask);
    const alphas = alphasCumprod(await readScheduler('base-trailing'), 'float32');
    const a = alphas[999]!;
    const ap = alphas[0]!; // 999 − 1000 < 0 → ᾱ_0
    const c1 = Math.sqrt(ap / a);
    const c2 = Math.sqrt(1 - ap) - (Math.sqrt(ap) * Math.sqrt(1 - a)) / Math.sqrt(a);
    assert.ok(Math.abs(c2) > 14, `c2 = ${c2}`);
    const epsEngine = new Float64Array(run.x.length);
    for (let i = 0; i < epsEngine.length; i++) epsEngine[i] = (run.x[i]! - c1 * run.xT[i]!) / c2;
    const worst = assertClose(epsEngine, rec.eps, 'ε at t = 999');
    // Which model's noise the engine took at each pixel, read off ε: it must be the reference mask exactly.
    const hw = LATENT * LATENT;
    let decided = 0;
    let mismatched = 0;
    for (let p = 0; p < hw; p++) {
      let dB = 0;
      let dO = 0;
      let gap = 0;
      for (let ch = 0; ch < CHANNELS; ch++) {
        const i = ch * hw + p;
        dB += Math.abs(epsEngine[i]! - rec.epsBase[i]!);
        dO += Math.abs(epsEngine[i]! - rec.epsOther[i]!);
        gap += Math.abs(rec.epsBase[i]! - rec.epsOther[i]!);
      }
      if (gap < 1e-3) continue;
      decided++;
      if ((dO < dB ? 1 : 0) !== rec.mask[p]) mismatched++;
    }
    assert.ok(decided > hw * 0.9, `${decided} pixels where the two noises differ`);
    assert.equal(mismatched, 0, `${mismatched} of ${decided} pixels took the other model's noise`);
    t.diagnostic(`${summary}; ε max |Δ|/(1+|ε|) = ${worst.toExponential(2)}; mask read off ε matches at all ${decided} decidable pixels`);
  });

  test('float64 ᾱ (CompVis) instead of float32 (diffusers): agrees to 1e-4, the size of the rounding sensitivity', async (t) => {
    const arr: Arrangement = { steps: 4, mode: 2, switchT: 251, kBase: 1, kOther: 1, blend: 'argmax', batch: 1, scheduler: 'base' };
    const [run, ref64, ref32, nudged] = await Promise.all([
      runGraph(arr, 'float64-alphas'),
      reference(arr, { alphas: 'float64' }),
      reference(arr, { alphas: 'float32' }),
      reference(arr, { alphas: 'float32', perturb: 6e-8 }),
    ]);
    const worst = assertClose(run.x, ref64.x, 'x vs float64-ᾱ reference', 1e-4);
    // A ±1-ulp-sized (6e-8 relative) change of x_T moves x after these 4 steps by the same order, so a float64-ᾱ
    // (≤1.63e-6 relative) reference cannot be expected to agree at 1e-5 after several steps; at one step it does.
    let sensitivity = 0;
    for (let i = 0; i < ref32.x.length; i++) sensitivity = Math.max(sensitivity, Math.abs(nudged.x[i]! - ref32.x[i]!) / (1 + Math.abs(ref32.x[i]!)));
    assert.ok(sensitivity > 1e-7, 'the perturbation is visible');
    t.diagnostic(
      `float64-ᾱ reference: max |Δx|/(1+|x|) = ${worst.toExponential(2)}; x_T × (1 ± 6e-8) moves x by up to ${sensitivity.toExponential(2)}`,
    );
  });

  test('ties go to BASE: k = 0 makes both maps exactly uniform, so the fused steps use BASE alone', async (t) => {
    const arr: Arrangement = { steps: 4, mode: 2, switchT: 251, kBase: 0, kOther: 0, blend: 'argmax', batch: 1, scheduler: 'base' };
    const { summary, run } = await compareArrangement(arr, 'ties', 'all-base');
    // Same x as a run that never fuses (mode 2 with the switch at 1000), though OTHER is still evaluated.
    const { x: baseAlone } = await reference({ ...arr, switchT: 1000 });
    assert.deepEqual(run.x, baseAlone);
    assert.equal(callsOf(run.result, 'other'), 2);
    t.diagnostic(summary);
  });

  test('one step at t = 1 (leading spacing): the last step goes to ᾱ_0, not 1', async (t) => {
    t.diagnostic(
      (await compareArrangement({ steps: 1, mode: 2, switchT: 0, kBase: 1, kOther: 1, blend: 'argmax', batch: 1, scheduler: 'base' }, 'one-step-1')).summary,
    );
  });
});
