import type { GraphIssue } from '../../nodes/graph-format.js';

export interface ImageRef {
  readonly name: string;
  readonly url: string;
}

export interface RunOutput {
  readonly node: string;
  readonly kind: string;
  readonly name: string;
  readonly url: string;
}

export type RunStatus = 'queued' | 'running' | 'done' | 'error' | 'cancelled';

/** `GET /api/runs/:id`, list entries and WS snapshot entries. The server names the id `id`; `run_id` is accepted too. */
export interface RunInfo {
  readonly id?: string;
  readonly run_id?: string;
  readonly status: RunStatus | string;
  readonly outputs?: readonly RunOutput[];
  readonly error?: { readonly node?: string | null; readonly message: string; readonly details?: string } | null;
  readonly node_states?: Readonly<Record<string, unknown>>;
  readonly progress?: { readonly node: string; readonly step: number; readonly steps: number; readonly t: number } | null;
  readonly preview?: { readonly node: string; readonly step: number; readonly steps: number; readonly image: string };
  readonly position?: number | null;
  readonly graph?: unknown;
  readonly created_at?: number;
}

export function runIdOf(run: RunInfo): string {
  return run.id ?? run.run_id ?? '';
}

export interface RunTimings {
  readonly queue_ms?: number | null;
  readonly run_ms?: number | null;
  readonly nodes?: Readonly<Record<string, number>>;
}

export interface TemplateInfo {
  readonly name: string;
  readonly meta?: { readonly name?: string; readonly description?: string };
}

export interface SubmitAccepted {
  readonly run_id: string;
  readonly position: number;
}

export type ServerMessage =
  | { type: 'snapshot'; runs: RunInfo[] }
  | { type: 'queued'; run_id: string; position: number }
  | { type: 'started'; run_id: string }
  | { type: 'node_started'; run_id: string; node: string }
  | { type: 'node_cached'; run_id: string; node: string }
  | { type: 'progress'; run_id: string; node: string; step: number; steps: number; t: number }
  | { type: 'preview'; run_id: string; node: string; step: number; steps: number; image: string }
  | { type: 'node_done'; run_id: string; node: string; ms: number }
  | { type: 'output'; run_id: string; node: string; images: ImageRef[] }
  | { type: 'error'; run_id: string; node: string | null; message: string; details?: string }
  /** A protocol-level complaint about a frame this client sent; it names no run. */
  | { type: 'error'; run_id?: undefined; message: string }
  | { type: 'cancelled'; run_id: string }
  | { type: 'done'; run_id: string; outputs?: RunOutput[]; timings?: RunTimings };

export type { GraphIssue };
