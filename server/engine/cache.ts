/** Default byte budget of the node cache (`--max-cache-memory`). */
export const DEFAULT_CACHE_BYTES = 256 * 2 ** 20;

export interface NodeCacheOptions {
  /** Evict least-recently-used entries beyond this many bytes of tensor data; a bigger entry is not kept. */
  readonly maxBytes?: number;
  readonly maxEntries?: number;
}

/** Bytes of tensor data an entry holds: the typed arrays of its values (a Tensor32's `data`, or an array itself). */
export function entryBytes(outputs: Record<string, unknown>): number {
  let bytes = 0;
  for (const value of Object.values(outputs)) {
    if (ArrayBuffer.isView(value)) bytes += value.byteLength;
    else if (typeof value === 'object' && value !== null && 'data' in value && ArrayBuffer.isView(value.data)) bytes += value.data.byteLength;
  }
  return bytes;
}

/**
 * Outputs of finished nodes kept across runs, keyed by a signature of (type, params, upstream signatures).
 * A later run whose node has the same signature reuses the outputs instead of recomputing them. Bounded by the
 * bytes of the tensors it holds, not only by entries: one 4096² latent outweighs hundreds of small ones.
 */
export class NodeCache {
  private readonly entries = new Map<string, { outputs: Record<string, unknown>; bytes: number }>();
  private total = 0;
  private readonly maxBytes: number;
  private readonly maxEntries: number;

  constructor(options: NodeCacheOptions = {}) {
    this.maxBytes = options.maxBytes ?? DEFAULT_CACHE_BYTES;
    this.maxEntries = options.maxEntries ?? 128;
  }

  get(signature: string): Record<string, unknown> | undefined {
    const hit = this.entries.get(signature);
    if (hit) {
      this.entries.delete(signature);
      this.entries.set(signature, hit);
    }
    return hit?.outputs;
  }

  set(signature: string, outputs: Record<string, unknown>): void {
    this.remove(signature);
    const bytes = entryBytes(outputs);
    if (bytes > this.maxBytes) return;
    this.entries.set(signature, { outputs, bytes });
    this.total += bytes;
    while (this.entries.size > this.maxEntries || this.total > this.maxBytes) this.remove(this.entries.keys().next().value!);
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** Bytes of tensor data held now. */
  get bytes(): number {
    return this.total;
  }

  private remove(signature: string): void {
    const old = this.entries.get(signature);
    if (!old) return;
    this.entries.delete(signature);
    this.total -= old.bytes;
  }
}
