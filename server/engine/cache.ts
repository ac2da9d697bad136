/**
 * Outputs of finished nodes kept across runs, keyed by a signature of (type, params, upstream signatures).
 * A later run whose node has the same signature reuses the outputs instead of recomputing them.
 */
export class NodeCache {
  private readonly entries = new Map<string, Record<string, unknown>>();

  constructor(private readonly maxEntries = 128) {}

  get(signature: string): Record<string, unknown> | undefined {
    const hit = this.entries.get(signature);
    if (hit) {
      this.entries.delete(signature);
      this.entries.set(signature, hit);
    }
    return hit;
  }

  set(signature: string, outputs: Record<string, unknown>): void {
    this.entries.delete(signature);
    this.entries.set(signature, outputs);
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
