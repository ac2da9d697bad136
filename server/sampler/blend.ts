/**
 * Saliency-aware Noise Blending (spec §1.2-§1.3): combine two noise predictions with per-pixel
 * saliency maps of shape (B,1,H,W), the same mask or weight for every latent channel.
 */

import { latentSize } from './guidance.js';
import type { LatentShape } from './guidance.js';

function checkLength(fn: string, name: string, arr: Float32Array, expected: number): void {
  if (arr.length !== expected) throw new RangeError(`${fn}: ${name} has length ${arr.length}, expected ${expected}`);
}

function checkBlendArgs(
  fn: string,
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  salA: Float32Array,
  salB: Float32Array,
  shape: LatentShape,
): void {
  const n = latentSize(shape);
  const maps = shape.batch * shape.height * shape.width;
  checkLength(fn, 'out', out, n);
  checkLength(fn, 'a', a, n);
  checkLength(fn, 'b', b, n);
  checkLength(fn, 'salA', salA, maps);
  checkLength(fn, 'salB', salB, maps);
}

/**
 * argmax SNB: per pixel, take b where salB > salA (strict), else a; the mask is shared by all channels. out may alias a. Returns the number of pixels (over B*H*W) that took b, for diagnostics.
 *
 * The strict comparison reproduces torch.argmax over [base, other], which returns the first index
 * on ties, so ties (and NaN saliencies) keep a. The original compares fp16-rounded probabilities, so
 * float32 maps can pick differently only at near-tie pixels (spec §1.3). Each pixel is read and
 * written in place, so out may alias b as well.
 */
export function blendArgmax(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  salA: Float32Array,
  salB: Float32Array,
  shape: LatentShape,
): number {
  checkBlendArgs('blendArgmax', out, a, b, salA, salB, shape);
  const { batch, channels, height, width } = shape;
  const hw = height * width;
  let tookB = 0;
  // Pixel-outer, channel-inner: the mask is decided once per pixel and the C strided streams stay
  // sequential, which the prefetcher handles well for the small C of latents.
  for (let s = 0; s < batch; s++) {
    const mapBase = s * hw;
    const sampleBase = s * channels * hw;
    for (let p = 0; p < hw; p++) {
      const takeB = salB[mapBase + p]! > salA[mapBase + p]!;
      if (takeB) tookB++;
      const src = takeB ? b : a;
      if (src === out) continue;
      for (let c = 0; c < channels; c++) {
        const i = sampleBase + c * hw + p;
        out[i] = src[i]!;
      }
    }
  }
  return tookB;
}

/**
 * soft SNB (FuseGraph extension): w = salB/(salA+salB) per pixel (0.5 if both are 0), out = (1-w)*a + w*b.
 *
 * Element-wise per pixel, so out may alias a or b.
 */
export function blendSoft(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  salA: Float32Array,
  salB: Float32Array,
  shape: LatentShape,
): void {
  checkBlendArgs('blendSoft', out, a, b, salA, salB, shape);
  const { batch, channels, height, width } = shape;
  const hw = height * width;
  for (let s = 0; s < batch; s++) {
    const mapBase = s * hw;
    const sampleBase = s * channels * hw;
    for (let p = 0; p < hw; p++) {
      const sa = salA[mapBase + p]!;
      const sb = salB[mapBase + p]!;
      const total = sa + sb;
      const w = total === 0 ? 0.5 : sb / total;
      const wa = 1 - w;
      for (let c = 0; c < channels; c++) {
        const i = sampleBase + c * hw + p;
        out[i] = wa * a[i]! + w * b[i]!;
      }
    }
  }
}
