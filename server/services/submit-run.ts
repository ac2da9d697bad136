import type { GraphIssue } from '../../nodes/graph-format.js';
import { prepareRun, type Admission } from '../engine/prepare.js';
import { QueueLimitError, type RunQueue, type SubmitOptions } from './run-queue.js';

export type { Admission } from '../engine/prepare.js';

export type SubmitResult =
  | { readonly ok: true; readonly run_id: string; readonly position: number }
  | { readonly ok: false; readonly reason: 'invalid_graph'; readonly message: string; readonly issues: readonly GraphIssue[] }
  | { readonly ok: false; readonly reason: 'queue_full'; readonly message: string };

/** What the queue is fed through, built once per server with its admission check. */
export interface Submitter {
  (graph: unknown, clientId: string | null, opts?: SubmitOptions): Promise<SubmitResult>;
  /** Every issue submitting this graph would meet (empty: it would be queued); nothing is queued. */
  check(graph: unknown): Promise<readonly GraphIssue[]>;
}

/**
 * The one way a graph enters the queue, for POST /api/runs and the WebSocket's `run` frame alike, and the one way it
 * is checked without running (POST /api/validate, the `validate` frame): prepareRun's validate → plan → admit, so
 * nothing is queued unless the whole graph is valid and admitted, every issue comes back at once (ComfyUI A7.4), and a
 * check says exactly what a submission would. The queue takes the plan, so the run is not validated again.
 */
export function submitter(queue: RunQueue, admit: Admission): Submitter {
  const submit = async (graph: unknown, clientId: string | null, opts: SubmitOptions = {}): Promise<SubmitResult> => {
    const prepared = await prepareRun(graph, admit);
    if (!prepared.ok) {
      const n = prepared.issues.length;
      return { ok: false, reason: 'invalid_graph', message: `the graph has ${n} issue${n === 1 ? '' : 's'}; nothing was queued`, issues: prepared.issues };
    }
    try {
      return { ok: true, ...queue.submit(prepared.plan, clientId, opts) };
    } catch (err) {
      if (err instanceof QueueLimitError) return { ok: false, reason: 'queue_full', message: err.message };
      throw err;
    }
  };
  return Object.assign(submit, { check: async (graph: unknown) => (await prepareRun(graph, admit)).issues });
}
