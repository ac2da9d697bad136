import { freemem } from 'node:os';
import { queryGpuMemory } from '../runtime/gpu-memory.js';
import type { ProviderChoice } from '../runtime/providers.js';
import { providerCandidates } from '../runtime/providers.js';
import { formatBytes } from '../engine/format-bytes.js';

/**
 * The share of the free memory a run may plan to use by default: the rest is for the models' weights (loaded after
 * the server starts), ONNX Runtime's arena rounding, other runs' buffers and everything else on the machine.
 */
export const DEFAULT_RUN_MEMORY_FRACTION = 0.5;

export interface RunMemoryDefaultOptions {
  /** The provider the server's models run on; `auto` is what LoadModel's `auto` tries first here. */
  readonly provider: ProviderChoice;
  readonly log: (message: string) => void;
  /** The nvidia-smi executable. Default: `nvidia-smi` on the PATH. */
  readonly nvidiaSmi?: string;
}

/**
 * `--max-run-memory` when none is given: a fraction of the GPU's free memory when the models run on a GPU and nvidia-smi
 * reports it, else of the free RAM (with a log line saying why, on a GPU provider).
 */
export function defaultMaxRunMemory(o: RunMemoryDefaultOptions): number {
  const provider = o.provider === 'auto' ? providerCandidates('auto')[0]! : o.provider;
  const ram = Math.floor(freemem() * DEFAULT_RUN_MEMORY_FRACTION);
  if (provider === 'cpu') return ram;
  try {
    return Math.floor(queryGpuMemory(o.nvidiaSmi).freeBytes * DEFAULT_RUN_MEMORY_FRACTION);
  } catch (err) {
    const why = ((err as Error).message ?? String(err)).split('\n')[0];
    o.log(`--max-run-memory: the models run on ${provider}, but nvidia-smi could not report the GPU's free memory (${why}); ` +
      `the default per-run budget is half the free RAM instead, ${formatBytes(ram)}`);
    return ram;
  }
}

/**
 * The per-run budget as `serve` and `fusegraph run` take it: the `--max-run-memory` given (it must be a positive number
 * of bytes) or, when none is, defaultMaxRunMemory's.
 */
export function resolveMaxRunMemory(given: number | undefined, o: RunMemoryDefaultOptions): number {
  const bytes = given ?? defaultMaxRunMemory(o);
  if (!(Number.isFinite(bytes) && bytes > 0)) throw new Error(`maxRunMemory must be a positive number of bytes, got ${bytes}`);
  return bytes;
}
