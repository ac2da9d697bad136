/**
 * MagicFusion saliency ("noise to salience map", spec §1.2-§1.3 and Appendix A).
 *
 * Per sample: softmax over the H*W positions of k * mean_c(Blur(|scale*(cond - uncond)|)), where
 * Blur = 4x4 box filter (stride 1, zero pad 1, divisor always 16) followed by a bilinear resize of the
 * (H-1)x(W-1) result back to HxW.
 */

import { latentSize } from './guidance.js';
import type { LatentShape } from './guidance.js';

/**
 * The plane helpers take float32 (the sampler's storage) or float64 (the saliency computer's work
 * buffers): keeping the intermediate planes in float64 is what lets the channel mean be taken first
 * without drifting from the reference order of operations.
 */
export type PlaneArray = Float32Array | Float64Array;

function checkCount(fn: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) throw new RangeError(`${fn}: ${name} must be an integer >= ${min}, got ${v}`);
}

function checkLength(fn: string, name: string, arr: PlaneArray, expected: number): void {
  if (arr.length !== expected) throw new RangeError(`${fn}: ${name} has length ${arr.length}, expected ${expected}`);
}

/**
 * (planes,h,w) -> (planes,h-1,w-1); zero pad 1, divisor always 16.
 *
 * PyTorch AvgPool2d(4, stride=1, padding=1) with count_include_pad=True: output p averages input
 * rows/cols p-1 .. p+2, and the padded zeros still count, so border outputs are darkened.
 *
 * The window is clipped to the real pixels instead of materialising a padded copy, and the four
 * column sums of a window are carried along the row (a shift register, no subtraction, so no
 * drift): 4 loads per output instead of 16, without needing a scratch row.
 */
export function avgPool4Pad1(out: PlaneArray, src: PlaneArray, planes: number, h: number, w: number): void {
  const fn = 'avgPool4Pad1';
  checkCount(fn, 'planes', planes, 1);
  checkCount(fn, 'h', h, 2);
  checkCount(fn, 'w', w, 2);
  const oh = h - 1;
  const ow = w - 1;
  checkLength(fn, 'src', src, planes * h * w);
  checkLength(fn, 'out', out, planes * oh * ow);
  for (let pl = 0; pl < planes; pl++) {
    const sBase = pl * h * w;
    const oBase = pl * oh * ow;
    for (let p = 0; p < oh; p++) {
      const top = sBase + (p > 0 ? p - 1 : 0) * w;
      const bottom = sBase + (p + 2 < h ? p + 2 : h - 1) * w;
      const oRow = oBase + p * ow;
      // Window of output q covers columns q-1 .. q+2; column -1 is padding.
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let r = top; r <= bottom; r += w) {
        s1 += src[r]!;
        s2 += src[r + 1]!;
      }
      if (w > 2) for (let r = top; r <= bottom; r += w) s3 += src[r + 2]!;
      for (let q = 0; q < ow; q++) {
        out[oRow + q] = (s0 + s1 + s2 + s3) / 16;
        s0 = s1;
        s1 = s2;
        s2 = s3;
        s3 = 0;
        const next = q + 3;
        if (next < w) for (let r = top; r <= bottom; r += w) s3 += src[r + next]!;
      }
    }
  }
}

/**
 * (planes,ih,iw) -> (planes,oh,ow), bilinear, PyTorch interpolate align_corners=False index rules:
 * src = (i+0.5)*I/O - 0.5 clamped at 0, i0 = floor(src), i1 = min(i0+1, I-1), lambda = src - i0.
 * No antialias (MagicFusion only upsamples 63 -> 64, where antialias is a no-op).
 *
 * Source coordinates are computed in float64 as in the spec's Appendix A; PyTorch computes them in
 * float32, which moves the weights by ~1e-7 relative at most.
 */
export function resizeBilinear(
  out: PlaneArray,
  src: PlaneArray,
  planes: number,
  ih: number,
  iw: number,
  oh: number,
  ow: number,
): void {
  const fn = 'resizeBilinear';
  checkCount(fn, 'planes', planes, 1);
  checkCount(fn, 'ih', ih, 1);
  checkCount(fn, 'iw', iw, 1);
  checkCount(fn, 'oh', oh, 1);
  checkCount(fn, 'ow', ow, 1);
  checkLength(fn, 'src', src, planes * ih * iw);
  checkLength(fn, 'out', out, planes * oh * ow);
  const rows = axisTaps(ih, oh);
  const cols = axisTaps(iw, ow);
  for (let pl = 0; pl < planes; pl++) {
    const sBase = pl * ih * iw;
    const oBase = pl * oh * ow;
    for (let i = 0; i < oh; i++) {
      const ly = rows.frac[i]!;
      const hy = 1 - ly;
      const row0 = sBase + rows.lo[i]! * iw;
      const row1 = sBase + rows.hi[i]! * iw;
      const oRow = oBase + i * ow;
      for (let j = 0; j < ow; j++) {
        const x0 = cols.lo[j]!;
        const x1 = cols.hi[j]!;
        const lx = cols.frac[j]!;
        // Rows first, then columns: the same association as Appendix A.
        const left = src[row0 + x0]! * hy + src[row1 + x0]! * ly;
        const right = src[row0 + x1]! * hy + src[row1 + x1]! * ly;
        out[oRow + j] = left * (1 - lx) + right * lx;
      }
    }
  }
}

/** Source taps of a bilinear resize along one axis, by PyTorch's align_corners=False rules (same for rows and columns). */
function axisTaps(inSize: number, outSize: number): { lo: Int32Array; hi: Int32Array; frac: Float64Array } {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let o = 0; o < outSize; o++) {
    let f = (o + 0.5) * scale - 0.5;
    if (f < 0) f = 0;
    // f >= 0 here, so truncation is floor.
    let i0 = f | 0;
    if (i0 > inSize - 1) i0 = inSize - 1;
    lo[o] = i0;
    hi[o] = i0 + 1 < inSize ? i0 + 1 : inSize - 1;
    frac[o] = f - i0;
  }
  return { lo, hi, frac };
}

/**
 * Reusable MagicFusion saliency computer for one latent shape.
 *
 * Precision and order of operations:
 * - The channel mean is taken *before* the blur. Pool and resize are linear and the abs comes first,
 *   so this equals the reference's blur-then-mean in exact arithmetic, and it blurs one plane per
 *   sample instead of C.
 * - All intermediates (|scale*(cond-uncond)|, the mean, pooled and resized planes, the logits, the
 *   exponentials and their sum) live in float64 work buffers. Reordering therefore costs ~1e-15
 *   relative, far below the single float32 rounding of the stored probabilities (~6e-8), so the
 *   output matches a float64 reference in the code's order to ~1e-7 relative.
 * - The softmax subtracts the per-sample maximum logit, so any finite k (including negative k and
 *   large k*scale products) is safe from overflow.
 * - The blur resizes the (H-1)x(W-1) pooled plane back to exactly HxW. MagicFusion hard-codes
 *   Resize(64) for 64x64 latents; for other shapes the map must still align with the latent pixels.
 *
 * Work buffers are allocated once in the constructor; compute() allocates nothing.
 */
export class SaliencyComputer {
  readonly shape: LatentShape;
  private readonly mean: Float64Array;
  private readonly pooled: Float64Array;
  private readonly resized: Float64Array;

  constructor(shape: LatentShape) {
    latentSize(shape);
    if (shape.height < 2 || shape.width < 2) {
      throw new RangeError(`SaliencyComputer: height and width must be >= 2 for the 4x4 pad-1 pool, got ${shape.height}x${shape.width}`);
    }
    this.shape = Object.freeze({ batch: shape.batch, channels: shape.channels, height: shape.height, width: shape.width });
    const hw = shape.height * shape.width;
    this.mean = new Float64Array(hw);
    this.pooled = new Float64Array((shape.height - 1) * (shape.width - 1));
    this.resized = new Float64Array(hw);
  }

  /** out (length B*H*W): per sample, softmax over the H*W positions of k * mean_c( Resize_bilinear(AvgPool4x4_s1_p1(|scale*(cond-uncond)|)) ) */
  compute(out: Float32Array, cond: Float32Array, uncond: Float32Array, scale: number, k: number): void {
    const { batch, channels, height, width } = this.shape;
    const hw = height * width;
    const n = batch * channels * hw;
    const fn = 'SaliencyComputer.compute';
    checkLength(fn, 'cond', cond, n);
    checkLength(fn, 'uncond', uncond, n);
    checkLength(fn, 'out', out, batch * hw);
    if (!Number.isFinite(scale)) throw new RangeError(`${fn}: scale must be finite, got ${scale}`);
    if (!Number.isFinite(k)) throw new RangeError(`${fn}: k must be finite, got ${k}`);

    const mean = this.mean;
    const pooled = this.pooled;
    const resized = this.resized;
    // |scale*d| = |scale|*|d|: pulling |scale| and 1/C out of the per-element loop is exact up to
    // one float64 rounding.
    const factor = Math.abs(scale) / channels;

    for (let b = 0; b < batch; b++) {
      const sampleBase = b * channels * hw;
      const sampleEnd = sampleBase + channels * hw;
      for (let p = 0; p < hw; p++) {
        let acc = 0;
        for (let i = sampleBase + p; i < sampleEnd; i += hw) acc += Math.abs(cond[i]! - uncond[i]!);
        mean[p] = acc * factor;
      }

      avgPool4Pad1(pooled, mean, 1, height, width);
      resizeBilinear(resized, pooled, 1, height - 1, width - 1, height, width);

      let maxLogit = -Infinity;
      for (let p = 0; p < hw; p++) {
        const z = k * resized[p]!;
        if (z > maxLogit) maxLogit = z;
      }
      let sum = 0;
      for (let p = 0; p < hw; p++) {
        const e = Math.exp(k * resized[p]! - maxLogit);
        resized[p] = e;
        sum += e;
      }
      const inv = 1 / sum;
      const outBase = b * hw;
      for (let p = 0; p < hw; p++) out[outBase + p] = resized[p]! * inv;
    }
  }
}
