import type { Graph } from '../../nodes/graph-format.js';
import { getNodeDef } from '../../nodes/index.js';

/**
 * The nodes a run executes, in dependency order: everything the output nodes need, nothing else.
 * Assumes a validated (acyclic) graph.
 */
export function planExecution(graph: Graph): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (id: string): void => {
    if (state.get(id) === 'done') return;
    state.set(id, 'visiting');
    for (const link of Object.values(graph.nodes[id]?.inputs ?? {})) visit(link.node);
    state.set(id, 'done');
    order.push(id);
  };
  // Sorted ids make the order, and so event order and output numbering, reproducible.
  for (const id of Object.keys(graph.nodes).sort()) {
    const def = getNodeDef(graph.nodes[id]!.type);
    if (def?.output) visit(id);
  }
  return order;
}

/** Params with defaults filled in, per node: what a run actually used. */
export function resolveParams(graph: Graph): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [id, node] of Object.entries(graph.nodes)) {
    const def = getNodeDef(node.type);
    const params: Record<string, unknown> = {};
    for (const [name, p] of Object.entries(def?.params ?? {})) params[name] = node.params?.[name] ?? p.default;
    out[id] = params;
  }
  return out;
}
