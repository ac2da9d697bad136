import { fetchModelEntries, type ModelEntry } from './http.js';

/** A model path as written in a graph, compared with the server's listing: no leading "./", no trailing "/". */
export function normalizeModelPath(p: string): string {
  return p.trim().replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/**
 * The model folders and files the server has, for the model dropdowns and the "not installed" flags. Asked again
 * whenever a graph opens, since models can be added while the editor is open. `paths()` is null until the first answer.
 */
export class ModelList {
  private list: readonly ModelEntry[] | null = null;
  private readonly listeners = new Set<() => void>();

  readonly subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  readonly paths = (): readonly ModelEntry[] | null => this.list;

  async refresh(): Promise<readonly ModelEntry[] | null> {
    try {
      this.list = await fetchModelEntries();
      for (const l of this.listeners) l();
    } catch {
      // The flags need the list; without it they stay off rather than flag everything.
    }
    return this.list;
  }

  /** False only when the list is known and lacks the path. */
  has(path: string): boolean {
    const p = normalizeModelPath(path);
    return this.list === null || this.list.some((e) => e.path === p);
  }
}
