import { readFileSync } from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './graphs.js';

/** PyTorch's own float32 arrays for diffusers' beta schedules (written once by tools/torch-reference/schedule-reference.py). */
export interface TorchScheduleRef {
  readonly config: Record<string, unknown>;
  readonly betas: Float32Array;
  readonly alphas_cumprod: Float32Array;
  readonly sigmas: Float32Array;
}

const decode = (b64: string): Float32Array => {
  const bytes = Buffer.from(b64, 'base64');
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
};

const raw = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'torch-schedules.json'), 'utf8')) as {
  configs: Record<string, { config: Record<string, unknown>; betas: string; alphas_cumprod: string; sigmas: string }>;
};

export const TORCH_SCHEDULES: Record<string, TorchScheduleRef> = Object.fromEntries(
  Object.entries(raw.configs).map(([name, c]) => [
    name,
    { config: c.config, betas: decode(c.betas), alphas_cumprod: decode(c.alphas_cumprod), sigmas: decode(c.sigmas) },
  ]),
);
