/**
 * A UNet's output as ε, whatever it predicts, so guidance, saliency, blending and every sampler work in one
 * parameterisation: an ε-model fused with a v-model blends like with like (blending a v-prediction as if it were
 * ε is 0.7–0.9 relative L2 off), and two v-models' saliency is not scaled by √(1 + σ²).
 *
 * With x_t = √ᾱ·x0 + √(1−ᾱ)·ε and v = √ᾱ·ε − √(1−ᾱ)·x0 (Salimans & Ho; diffusers' DDIM `v_prediction` branch):
 *   ε = √ᾱ·v + √(1−ᾱ)·x_t,   and from an x0-prediction ε = (x_t − √ᾱ·x0) / √(1−ᾱ).
 * `x` is the UNet's input (the VP sample x_t); `rows` consecutive copies of it make up `output` (CFG's batch).
 */
export function toEpsilon(
  output: Float32Array,
  x: Float32Array,
  alphaCumprod: number,
  prediction: 'epsilon' | 'v_prediction' | 'sample',
): void {
  if (prediction === 'epsilon') return;
  const a = Math.sqrt(alphaCumprod);
  const s = Math.sqrt(1 - alphaCumprod);
  const n = x.length;
  if (output.length % n !== 0) throw new RangeError(`model output of ${output.length} values is not a whole number of ${n}-value samples`);
  for (let base = 0; base < output.length; base += n) {
    if (prediction === 'v_prediction') for (let i = 0; i < n; i++) output[base + i] = a * output[base + i]! + s * x[i]!;
    else for (let i = 0; i < n; i++) output[base + i] = (x[i]! - a * output[base + i]!) / s;
  }
}
