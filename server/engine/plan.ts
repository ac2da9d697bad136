import type { Graph } from '../../nodes/graph-format.js';
import { own } from '../../nodes/graph-format.js';
import { getNodeDef } from '../../nodes/index.js';

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
