import { execFileSync } from 'node:child_process';

export interface GpuMemory {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

const MIB = 2 ** 20;

/**
 * The GPUs in the output of `nvidia-smi --query-gpu=memory.free,memory.total --format=csv,noheader,nounits`: one line
 * per GPU, "free, total" in MiB (also accepted with a " MiB" unit, as without nounits). A line nvidia-smi could not
 * fill ("[N/A]", "[Insufficient Permissions]", as on some MIG or container setups) is an error, not a zero.
 */
export function parseNvidiaSmiMemory(text: string): GpuMemory[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length === 0) throw new Error('nvidia-smi listed no GPU');
  return lines.map((line) => {
    const fields = line.split(',').map((f) => f.trim().replace(/\s*MiB$/i, ''));
    const [free, total] = fields.map((f) => (/^\d+(\.\d+)?$/.test(f) ? Number(f) : NaN));
    if (fields.length !== 2 || !Number.isFinite(free) || !Number.isFinite(total) || total! <= 0) {
      throw new Error(`unexpected nvidia-smi line "${line}"`);
    }
    return { freeBytes: free! * MIB, totalBytes: total! * MIB };
  });
}

/**
 * Memory of the GPU that ONNX Runtime's CUDA provider uses (device 0 of those CUDA_VISIBLE_DEVICES shows), from
 * nvidia-smi. Throws when nvidia-smi is missing, fails or prints something else.
 */
export function queryGpuMemory(nvidiaSmi = 'nvidia-smi'): GpuMemory {
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',')[0]?.trim();
  const args = ['--query-gpu=memory.free,memory.total', '--format=csv,noheader,nounits', ...(visible ? [`--id=${visible}`] : [])];
  const out = execFileSync(nvidiaSmi, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  return parseNvidiaSmiMemory(out)[0]!;
}
