import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import type { RunPlan } from './plan.js';
import { validateGraph } from './validate.js';

/**
 * The checks that need more than the graph: the model folders' metadata (sizes, steps, the memory budget, the
 * nodes' `admit` hooks: server/execution/preflight.ts) or, with scale-out, that a live worker serves the run's models.
 */
export type Admission = (plan: RunPlan) => Promise<GraphIssue[]>;

export type Prepared =
  | { readonly ok: true; readonly plan: RunPlan; readonly issues: readonly [] }
  | { readonly ok: false; readonly graph: Graph | null; readonly issues: readonly GraphIssue[] };

/**
 * The one decision on whether a graph may run: validate → plan → admit, each once, every issue at once with node,
 * field and code. `fusegraph validate` and `run`, POST /api/runs and /api/validate, and the WebSocket's `run` and
 * `validate` frames all come here, so what validate says is what run does. A valid, admitted graph comes back as its
 * plan, which the queue and the executor take as it is.
 */
export async function prepareRun(value: unknown, admit: Admission): Promise<Prepared> {
  const validated = validateGraph(value);
  if (!validated.plan) return { ok: false, graph: validated.graph, issues: validated.issues };
  const issues = await admit(validated.plan);
  return issues.length ? { ok: false, graph: validated.graph, issues } : { ok: true, plan: validated.plan, issues: [] };
}
