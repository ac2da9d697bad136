/**
 * torch.randn on the CPU for float32 tensors of ≥ 16 elements (ATen's normal_fill): MT19937 seeded like
 * torch.manual_seed, 24-bit uniforms, Box–Muller on pairs (j, j + 8) of each block of 16, the last block recomputed
 * from fresh uniforms when the size is not a multiple of 16. Used only to port diffusers' tests of the ancestral and
 * SDE samplers, whose expected sums come from torch's generator; FuseGraph itself draws NumPy's noise.
 */
import { NumpyRandomState } from '../../server/sd/rng.js';

export class TorchCpuGenerator {
  // NumPy's RandomState and torch's CPU generator both are MT19937 with init_genrand(seed).
  private readonly mt: NumpyRandomState;
  constructor(seed: number) {
    this.mt = new NumpyRandomState(seed);
  }

  private uniform(): number {
    return (this.mt.nextUint32() & 0xffffff) * 2 ** -24;
  }

  randn(size: number): Float32Array {
    if (size < 16) throw new RangeError('only the vectorised path (≥ 16 elements) is reproduced');
    const data = new Float32Array(size);
    for (let i = 0; i < size; i++) data[i] = this.uniform();
    for (let i = 0; i + 16 <= size; i += 16) boxMuller16(data, i);
    if (size % 16 !== 0) {
      const at = size - 16;
      for (let i = 0; i < 16; i++) data[at + i] = this.uniform();
      boxMuller16(data, at);
    }
    return data;
  }
}

function boxMuller16(data: Float32Array, at: number): void {
  const f = Math.fround;
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[at + j]!);
    const u2 = data[at + j + 8]!;
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(2 * Math.PI * u2);
    data[at + j] = f(radius * f(Math.cos(theta)));
    data[at + j + 8] = f(radius * f(Math.sin(theta)));
  }
}
