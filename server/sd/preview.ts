import sharp from 'sharp';

/**
 * A cheap preview of x̂0 without the VAE: the first three latent channels of the first sample, each stretched to
 * its own range. Costs microseconds, so sampling speed does not suffer; for pixel-space models it is the image.
 */
export async function encodePreview(x0: Float32Array, shape: readonly number[]): Promise<Buffer> {
  const [, channels, height, width] = shape as [number, number, number, number];
  const plane = height * width;
  const rgb = new Uint8Array(plane * 3);
  for (let c = 0; c < 3; c++) {
    const src = Math.min(c, channels - 1);
    let lo = Infinity;
    let hi = -Infinity;
    for (let p = 0; p < plane; p++) {
      const v = x0[src * plane + p]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const scale = hi > lo ? 255 / (hi - lo) : 0;
    for (let p = 0; p < plane; p++) rgb[p * 3 + c] = Math.round((x0[src * plane + p]! - lo) * scale);
  }
  const size = Math.max(width, height) < 128 ? 128 : Math.max(width, height);
  return sharp(rgb, { raw: { width, height, channels: 3 } }).resize({ width: size, height: size, fit: 'inside', kernel: 'nearest' }).png().toBuffer();
}
