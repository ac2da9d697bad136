import type { NodeStatus, StatusMap } from './node-status.js';
import { EMPTY_STATUS } from './node-status.js';

/**
 * Per-node run status with per-node subscriptions. rete renders every node in its own React root, so React
 * context cannot reach them; each node view subscribes here for its own id and only it re-renders on a progress
 * message, without going through `area.update` (which would re-render sockets and controls too).
 */
export class NodeStatusStore {
  private readonly map: StatusMap = new Map();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly pending = new Set<string>();
  private frame: number | null = null;

  get(id: string): NodeStatus {
    return this.map.get(id) ?? EMPTY_STATUS;
  }

  subscribe(id: string, listener: () => void): () => void {
    let set = this.listeners.get(id);
    if (!set) {
      set = new Set();
      this.listeners.set(id, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (!set.size) this.listeners.delete(id);
    };
  }

  /** Runs `fn` on the map and notifies the ids it reports, batched to one notification per animation frame. */
  mutate(fn: (map: StatusMap) => readonly string[]): void {
    for (const id of fn(this.map)) this.pending.add(id);
    if (this.frame !== null || !this.pending.size) return;
    const flush = () => {
      this.frame = null;
      const ids = [...this.pending];
      this.pending.clear();
      for (const id of ids) for (const l of this.listeners.get(id) ?? []) l();
    };
    this.frame = typeof requestAnimationFrame === 'function' ? requestAnimationFrame(flush) : (setTimeout(flush, 16) as unknown as number);
  }

  replaceAll(next: StatusMap): void {
    this.mutate((map) => {
      const ids = new Set([...map.keys(), ...next.keys()]);
      map.clear();
      for (const [k, v] of next) map.set(k, v);
      return [...ids];
    });
  }
}
