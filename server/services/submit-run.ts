import { validateGraph } from '../engine/validate.js';
import type { GraphIssue } from '../../nodes/graph-format.js';
import type { RunQueue, SubmitOptions } from './run-queue.js';

export type SubmitResult =
  | { readonly ok: true; readonly run_id: string; readonly position: number }
  | { readonly ok: false; readonly message: string; readonly issues: readonly GraphIssue[] };

/**
 * The one way a graph enters the queue, for POST /api/runs and the WebSocket's `run` frame alike: nothing is
 * queued unless the whole graph is valid, and every issue comes back at once (ComfyUI A7.4).
 */
export function submitRun(queue: RunQueue, graph: unknown, clientId: string | null, opts: SubmitOptions = {}): SubmitResult {
  const validated = validateGraph(graph);
  if (validated.issues.length > 0 || validated.graph === null) {
    const n = validated.issues.length;
    return { ok: false, message: `the graph has ${n} issue${n === 1 ? '' : 's'}; nothing was queued`, issues: validated.issues };
  }
  return { ok: true, ...queue.submit(validated.graph, clientId, opts) };
}
