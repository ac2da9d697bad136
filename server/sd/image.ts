/** NumPy's rounding (half to even), which numpy_to_pil's `(x * 255).round()` uses. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * One decoded image [3,H,W] in ≈[-1,1] → interleaved RGB bytes: clip(x/2 + 0.5, 0, 1) · 255, rounded half to even,
 * exactly as diffusers post-processes.
 */
export function toRgbBytes(src: Float32Array, height: number, width: number): Uint8Array {
  const plane = height * width;
  const out = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    for (let p = 0; p < plane; p++) {
      const v = Math.fround(Math.fround(src[c * plane + p]! / 2) + 0.5);
      const clipped = v < 0 ? 0 : v > 1 ? 1 : v;
      out[p * 3 + c] = roundHalfEven(Math.fround(clipped * 255));
    }
  }
  return out;
}
