/**
 * Saliency-aware Noise Blending (spec §1.2-§1.3): combine two or more noise predictions with per-pixel
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
  noises: readonly Float32Array[],
  sals: readonly Float32Array[],
  shape: LatentShape,
): void {
  const n = latentSize(shape);
  const maps = shape.batch * shape.height * shape.width;
  if (noises.length < 2 || noises.length !== sals.length) {
    throw new RangeError(`${fn}: needs 2 or more noises with one saliency each, got ${noises.length} and ${sals.length}`);
  }
  checkLength(fn, 'out', out, n);
  noises.forEach((x, k) => checkLength(fn, `noise ${k}`, x, n));
  sals.forEach((x, k) => checkLength(fn, `saliency ${k}`, x, maps));
}

/**
 * argmax SNB: per pixel, take the noise whose saliency is the largest, the mask shared by all channels. Returns how
 * many pixels (over B*H*W) took each input, for diagnostics.
 *
 * A later input wins only when strictly larger, and a NaN saliency wins over every number, the first NaN over later
 * ones: exactly torch.argmax over the stacked maps, which returns the first index on ties and treats NaN as the
 * maximum (torch 1.13: argmax([1, nan, 3]) = 1, argmax([nan, 2, nan]) = 0). The original compares fp16-rounded
 * probabilities, so float32 maps can pick differently only at near-tie pixels (spec §1.3). Each pixel is read and
 * written in place, so out may alias any input.
 */
export function blendArgmax(out: Float32Array, noises: readonly Float32Array[], sals: readonly Float32Array[], shape: LatentShape): number[] {
  checkBlendArgs('blendArgmax', out, noises, sals, shape);
  const { batch, channels, height, width } = shape;
  const hw = height * width;
  const took = new Array<number>(noises.length).fill(0);
  // Pixel-outer, channel-inner: the mask is decided once per pixel and the C strided streams stay
  // sequential, which the prefetcher handles well for the small C of latents.
  for (let s = 0; s < batch; s++) {
    const mapBase = s * hw;
    const sampleBase = s * channels * hw;
    for (let p = 0; p < hw; p++) {
      let best = 0;
      let bestSal = sals[0]![mapBase + p]!;
      for (let k = 1; k < sals.length && !Number.isNaN(bestSal); k++) {
        const v = sals[k]![mapBase + p]!;
        if (v > bestSal || Number.isNaN(v)) {
          best = k;
          bestSal = v;
        }
      }
      took[best]!++;
      const src = noises[best]!;
      if (src === out) continue;
      for (let c = 0; c < channels; c++) {
        const i = sampleBase + c * hw + p;
        out[i] = src[i]!;
      }
    }
  }
  return took;
}

/**
 * soft SNB (FuseGraph extension): per pixel, weights w_k = s_k / Σ s (equal weights if all are 0), out = Σ w_k·x_k.
 * The first weight is 1 − Σ_{k>0} w_k, so two inputs give exactly (1 − w)·a + w·b, w = s_b/(s_a + s_b).
 *
 * Element-wise per pixel, so out may alias any input.
 */
export function blendSoft(out: Float32Array, noises: readonly Float32Array[], sals: readonly Float32Array[], shape: LatentShape): void {
  checkBlendArgs('blendSoft', out, noises, sals, shape);
  const { batch, channels, height, width } = shape;
  const hw = height * width;
  const k = noises.length;
  const w = new Float64Array(k);
  for (let s = 0; s < batch; s++) {
    const mapBase = s * hw;
    const sampleBase = s * channels * hw;
    for (let p = 0; p < hw; p++) {
      let total = 0;
      for (let j = 0; j < k; j++) total += sals[j]![mapBase + p]!;
      let rest = 0;
      for (let j = 1; j < k; j++) {
        w[j] = total === 0 ? 1 / k : sals[j]![mapBase + p]! / total;
        rest += w[j]!;
      }
      w[0] = 1 - rest;
      for (let c = 0; c < channels; c++) {
        const i = sampleBase + c * hw + p;
        let acc = w[0]! * noises[0]![i]!;
        for (let j = 1; j < k; j++) acc += w[j]! * noises[j]![i]!;
        out[i] = acc;
      }
    }
  }
}
