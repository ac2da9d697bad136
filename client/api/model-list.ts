import { fetchModelPaths } from './http.js';

/** A model path as written in a graph, compared with the server's listing: no leading "./", no trailing "/". */
export function normalizeModelPath(p: string): string {
  return p.trim().replace(/^(\.\/)+/, '').replace(/\/+$/, '');
}

/**
 * The model folders the server has, for LoadModel's dropdown and the "not installed" flags. Asked again whenever a
 * graph opens, since folders can be added while the editor is open. `paths()` is null until the first answer.
 */
export class ModelList {
  private list: readonly string[] | null = null;
  private readonly listeners = new Set<() => void>();

  readonly subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  readonly paths = (): readonly string[] | null => this.list;

  async refresh(): Promise<readonly string[] | null> {
    try {
      this.list = await fetchModelPaths();
      for (const l of this.listeners) l();
    } catch {
      // The flags need the list; without it they stay off rather than flag everything.
    }
    return this.list;
  }

  /** False only when the list is known and lacks the path. */
  has(path: string): boolean {
    return this.list === null || this.list.includes(normalizeModelPath(path));
  }
}
