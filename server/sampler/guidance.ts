/**
 * Latent shapes and classifier-free guidance.
 *
 * Every sampler buffer is a flat Float32Array in NCHW order. Arithmetic runs in JS doubles and is
 * rounded to float32 once per stored element, which is at least as exact as the reference's fp32
 * tensor ops (spec §1.3, "precision").
 */

export interface LatentShape {
  readonly batch: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
}

function checkDim(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new RangeError(`LatentShape.${name} must be a positive integer, got ${v}`);
  }
}

/** Number of elements of a latent of this shape (B*C*H*W); throws on a malformed shape. */
export function latentSize(s: LatentShape): number {
  checkDim('batch', s.batch);
  checkDim('channels', s.channels);
  checkDim('height', s.height);
  checkDim('width', s.width);
  return s.batch * s.channels * s.height * s.width;
}

/**
 * out = uncond + scale*(cond - uncond)  (CFG)
 *
 * Element-wise, so out may alias uncond or cond.
 */
export function applyGuidance(out: Float32Array, uncond: Float32Array, cond: Float32Array, scale: number): void {
  const n = out.length;
  if (uncond.length !== n || cond.length !== n) {
    throw new RangeError(`applyGuidance: length mismatch (out ${n}, uncond ${uncond.length}, cond ${cond.length})`);
  }
  if (!Number.isFinite(scale)) throw new RangeError(`applyGuidance: scale must be finite, got ${scale}`);
  for (let i = 0; i < n; i++) {
    const u = uncond[i]!;
    out[i] = u + scale * (cond[i]! - u);
  }
}
