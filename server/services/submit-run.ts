import { validateGraph } from '../engine/validate.js';
import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import { QueueLimitError, type RunQueue, type SubmitOptions } from './run-queue.js';

export type SubmitResult =
  | { readonly ok: true; readonly run_id: string; readonly position: number }
  | { readonly ok: false; readonly reason: 'invalid_graph'; readonly message: string; readonly issues: readonly GraphIssue[] }
  | { readonly ok: false; readonly reason: 'queue_full'; readonly message: string };

/**
 * Checks a valid graph can still fail where it would run: sizes, steps and the memory budget against the model
 * folders (preflight), or with scale-out, that a live worker serves its models.
 */
export type Admission = (graph: Graph) => Promise<GraphIssue[]>;

/** What the queue is fed through, built once per server with its admission check. */
export type Submitter = (graph: unknown, clientId: string | null, opts?: SubmitOptions) => Promise<SubmitResult>;

/**
 * The one way a graph enters the queue, for POST /api/runs and the WebSocket's `run` frame alike: nothing is
 * queued unless the whole graph is valid and admitted, and every issue comes back at once (ComfyUI A7.4).
 */
export function submitter(queue: RunQueue, admit: Admission): Submitter {
  return async (graph, clientId, opts = {}) => {
    const validated = validateGraph(graph);
    const issues = validated.issues.length > 0 || validated.graph === null ? validated.issues : await admit(validated.graph);
    if (issues.length > 0 || validated.graph === null) {
      const n = issues.length;
      return { ok: false, reason: 'invalid_graph', message: `the graph has ${n} issue${n === 1 ? '' : 's'}; nothing was queued`, issues };
    }
    try {
      return { ok: true, ...queue.submit(validated.graph, clientId, opts) };
    } catch (err) {
      if (err instanceof QueueLimitError) return { ok: false, reason: 'queue_full', message: err.message };
      throw err;
    }
  };
}
