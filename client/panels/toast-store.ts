import type { ToastKind } from '../editor/fuse-editor.js';

export interface Toast {
  readonly id: number;
  readonly kind: ToastKind;
  readonly message: string;
  readonly action?: { readonly label: string; readonly run: () => void };
  /** Toasts with the same key replace each other: the latest news about one thing is the only one worth showing. */
  readonly key?: string;
}

export interface ToastOptions {
  readonly action?: Toast['action'];
  readonly key?: string;
}

const LIFETIME_MS: Record<ToastKind, number> = { info: 4000, success: 4000, error: 8000 };
const MAX_VISIBLE = 3;

/** Transient messages: refused links, import warnings, run results. Errors stay longer than news. */
export class ToastStore {
  private list: readonly Toast[] = [];
  private readonly listeners = new Set<() => void>();
  private seq = 0;

  readonly subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  readonly snapshot = (): readonly Toast[] => this.list;

  push(message: string, kind: ToastKind = 'info', { action, key }: ToastOptions = {}): void {
    // The same refusal repeated while the user keeps trying is one toast, not a stack.
    if (!key && this.list.some((t) => t.message === message && t.kind === kind)) return;
    const toast: Toast = { id: ++this.seq, kind, message, ...(action ? { action } : {}), ...(key ? { key } : {}) };
    const kept = key ? this.list.filter((t) => t.key !== key) : this.list;
    this.set([...kept, toast].slice(-MAX_VISIBLE));
    setTimeout(() => this.dismiss(toast.id), LIFETIME_MS[kind] + (action ? 4000 : 0));
  }

  dismiss(id: number): void {
    if (this.list.some((t) => t.id === id)) this.set(this.list.filter((t) => t.id !== id));
  }

  private set(list: readonly Toast[]): void {
    this.list = list;
    for (const l of this.listeners) l();
  }
}
