import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import { own } from '../../nodes/graph-format.js';
import { resolveModes } from '../../nodes/graph-modes.js';
import { getNodeDef } from '../../nodes/index.js';

/**
 * What a run executes, made once per run from the graph as submitted and handed along (admission, the queue, the
 * executor) instead of being derived again: the graph as submitted (modes, groups, notes and `ui` kept: what history
 * and PNGs record), the graph that runs (muted nodes left out, bypassed nodes replaced by pass-through links), the
 * nodes the outputs need in dependency order, and every node's params with defaults filled in.
 */
export class RunPlan {
  constructor(
    /** As submitted (after format migration): what is stored, shown by GET /api/runs/:id and written into PNGs. */
    readonly submitted: Graph,
    /** The graph that runs: modes resolved. */
    readonly graph: Graph,
    /** Node ids of `graph` to execute, inputs before their consumers. */
    readonly order: readonly string[],
    /** Params with defaults filled in, per node of `graph`: what the run used. */
    readonly params: Readonly<Record<string, Readonly<Record<string, unknown>>>>,
  ) {}
}

/**
 * Planning's first half: the graph a run executes, from the graph as submitted (nodes/graph-modes.ts). Its issues
 * name the consumers of muted nodes and of bypassed outputs nothing can feed.
 */
export function resolveRunGraph(submitted: Graph): { graph: Graph; issues: GraphIssue[] } {
  return resolveModes(submitted, getNodeDef);
}

/** Planning's second half, on a mode-resolved graph that passed validation (acyclic, every link resolvable). */
export function planRun(submitted: Graph, graph: Graph): RunPlan {
  return new RunPlan(submitted, graph, planExecution(graph), resolveParams(graph));
}

/**
 * The nodes a run executes, in dependency order: everything the output nodes need, nothing else.
 * Assumes a validated (acyclic) graph.
 */
export function planExecution(graph: Graph): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  // Depth-first post-order with an explicit stack (a long chain must not exhaust the call stack): a node is
  // emitted once every input it links has been.
  const visit = (root: string): void => {
    const frames: [string, string[]][] = [];
    const enter = (id: string): void => {
      seen.add(id);
      frames.push([id, Object.values(own(graph.nodes, id)?.inputs ?? {}).map((l) => l.node).reverse()]);
    };
    enter(root);
    while (frames.length) {
      const [id, pending] = frames.at(-1)!;
      const next = pending.pop();
      if (next === undefined) {
        frames.pop();
        order.push(id);
      } else if (!seen.has(next)) {
        enter(next);
      }
    }
  };
  // Sorted ids make the order, and so event order and output numbering, reproducible.
  for (const id of Object.keys(graph.nodes).sort()) {
    const def = getNodeDef(graph.nodes[id]!.type);
    if (def?.output && !seen.has(id)) visit(id);
  }
  return order;
}

/** Params with defaults filled in, per node: what a run actually used. */
export function resolveParams(graph: Graph): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [id, node] of Object.entries(graph.nodes)) {
    const def = getNodeDef(node.type);
    const params: Record<string, unknown> = {};
    for (const [name, p] of Object.entries(def?.params ?? {})) params[name] = own(node.params, name) ?? p.default;
    out[id] = params;
  }
  return out;
}

/**
 * The model folders a plan's nodes read (params of kind `path` under the `models` root), by node and field: what a
 * scale-out run is routed by. Read from the definitions, so a new loader node needs nothing here.
 */
export function modelPathsOf(plan: RunPlan): { node: string; field: string; path: string }[] {
  const out: { node: string; field: string; path: string }[] = [];
  for (const id of plan.order) {
    const def = getNodeDef(plan.graph.nodes[id]!.type);
    for (const [name, p] of Object.entries(def?.params ?? {})) {
      const value = plan.params[id]![name];
      // An optional path left empty names no file (LoadModel's `vae`: the model's own).
      if (p.kind === 'path' && p.root === 'models' && typeof value === 'string' && value !== '') out.push({ node: id, field: `params.${name}`, path: value });
    }
  }
  return out;
}
