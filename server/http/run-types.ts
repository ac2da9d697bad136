import type { Graph, GraphIssue } from '../../nodes/graph-format.js';

export const RUN_STATUSES = ['queued', 'running', 'done', 'error', 'cancelled'] as const;
export type RunStatus = (typeof RUN_STATUSES)[number];

export type NodeState = 'running' | 'cached' | 'done' | 'error' | 'cancelled';

/** A file a run wrote, as clients see it: no absolute paths, only a URL under /api. */
export interface RunOutput {
  readonly node: string;
  readonly kind: 'image' | 'latent';
  readonly name: string;
  readonly url: string;
}

export interface RunError {
  readonly node: string | null;
  readonly node_type?: string;
  readonly field?: string;
  readonly message: string;
  readonly details?: string;
  /** Set when the engine rejected the graph at run time (validation passed at submit, e.g. a model folder vanished). */
  readonly issues?: readonly GraphIssue[];
}

export interface RunTimings {
  /** From submission to start (the last start, when the run was re-queued by a restart). */
  readonly queue_ms: number | null;
  /** From start to finish. */
  readonly run_ms: number | null;
  /** Milliseconds per executed node; nodes served from the cache are absent. */
  readonly nodes: Readonly<Record<string, number>>;
}

export interface RunProgress {
  readonly node: string;
  readonly step: number;
  readonly steps: number;
  readonly t: number;
}

/** The fields of a run that are persisted and also shown to clients. */
export interface RunRecord {
  readonly id: string;
  readonly status: RunStatus;
  readonly client_id: string | null;
  /** Epoch milliseconds. */
  readonly created_at: number;
  readonly started_at: number | null;
  readonly finished_at: number | null;
  readonly outputs: readonly RunOutput[];
  readonly error: RunError | null;
  readonly timings: RunTimings | null;
  readonly node_states: Readonly<Record<string, NodeState>>;
}

/** What lists, snapshots and GET /api/runs/:id share; the detail adds the graph. */
export interface RunSummary extends RunRecord {
  /** Runs ahead of this one in the queue (0 = next); null unless queued. */
  readonly position: number | null;
  readonly progress: RunProgress | null;
  readonly cancel_requested: boolean;
}

export interface RunDetail extends RunSummary {
  readonly graph: Graph;
}

interface FileRef {
  readonly name: string;
  readonly url: string;
}

/** Server→client frames about one run; the WebSocket hub forwards them to subscribers. */
export type RunEvent =
  | { readonly type: 'queued'; readonly run_id: string; readonly position: number }
  | { readonly type: 'started'; readonly run_id: string }
  | { readonly type: 'node_started'; readonly run_id: string; readonly node: string }
  | { readonly type: 'node_cached'; readonly run_id: string; readonly node: string }
  | { readonly type: 'progress'; readonly run_id: string; readonly node: string; readonly step: number; readonly steps: number; readonly t: number }
  | { readonly type: 'preview'; readonly run_id: string; readonly node: string; readonly step: number; readonly steps: number; readonly image: string }
  | { readonly type: 'node_done'; readonly run_id: string; readonly node: string; readonly ms: number }
  | { readonly type: 'output'; readonly run_id: string; readonly node: string; readonly images: readonly FileRef[]; readonly latents: readonly FileRef[] }
  | { readonly type: 'error'; readonly run_id: string; readonly node: string | null; readonly message: string; readonly details?: string }
  | { readonly type: 'cancelled'; readonly run_id: string }
  | { readonly type: 'done'; readonly run_id: string; readonly outputs: readonly RunOutput[]; readonly timings: RunTimings };

export type RunEventListener = (event: RunEvent, run: { readonly client_id: string | null }) => void;
