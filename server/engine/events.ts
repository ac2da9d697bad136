/** What an execution reports while it runs; the CLI draws progress bars from it, the server forwards it over WS. */
export type ExecutionEvent =
  | { readonly type: 'node_started'; readonly node: string; readonly nodeType: string }
  | { readonly type: 'node_cached'; readonly node: string; readonly nodeType: string }
  | { readonly type: 'progress'; readonly node: string; readonly step: number; readonly steps: number; readonly t: number }
  | { readonly type: 'preview'; readonly node: string; readonly step: number; readonly steps: number; readonly png: Buffer }
  | { readonly type: 'node_done'; readonly node: string; readonly nodeType: string; readonly ms: number }
  /** Something the user should know that does not stop the run (e.g. LoRA keys the model does not have). */
  | { readonly type: 'warning'; readonly node: string; readonly message: string }
  | { readonly type: 'output'; readonly node: string; readonly files: readonly OutputFile[] };

/** A file a run wrote, relative to the run's output folder. */
export interface OutputFile {
  readonly node: string;
  readonly kind: 'image' | 'latent';
  /** File name inside the output folder (no directories). */
  readonly name: string;
  /** Absolute path on disk. */
  readonly path: string;
}

export interface RunResult {
  readonly outputs: readonly OutputFile[];
  /** Milliseconds per executed node id (cached nodes are absent). */
  readonly timings: Readonly<Record<string, number>>;
  /** UNet calls per model key (folder + provider) made by this run. */
  readonly unetCalls: Readonly<Record<string, number>>;
  readonly cachedNodes: readonly string[];
  /** Each model the run used, with the execution provider it runs on and why preferred ones were skipped. */
  readonly models: readonly { readonly key: string; readonly folder: string; readonly provider: string; readonly fallbacks: readonly { provider: string; error: string }[] }[];
  readonly ms: number;
}
