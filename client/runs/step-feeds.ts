import type { NodeDef } from '../../nodes/define.js';
import type { Graph } from '../../nodes/graph-format.js';
import { PER_STEP_SOCKETS } from '../../nodes/socket-types.js';

/** For each sampler, the per-step nodes (NOISE/SALIENCY producers) it evaluates inside its loop. */
export type StepFeeds = ReadonlyMap<string, readonly string[]>;

const isPerStep = (def: NodeDef | undefined): boolean =>
  !!def && Object.values(def.outputs).length > 0 && Object.values(def.outputs).every((o) => PER_STEP_SOCKETS.has(o.type));

/**
 * Per-step nodes get no node_started/node_done of their own: the server evaluates them at every step of the sampler
 * that consumes them. Their state on the canvas follows that sampler, so the wired graph tells which sampler feeds
 * on which nodes (through per-step links only).
 */
export function stepFeeds(graph: Graph, defOf: (type: string) => NodeDef | undefined): StepFeeds {
  const out = new Map<string, string[]>();
  for (const [id, node] of Object.entries(graph.nodes)) {
    if (isPerStep(defOf(node.type))) continue;
    const found = new Set<string>();
    const stack = Object.values(node.inputs ?? {}).map((l) => l.node);
    while (stack.length) {
      const up = stack.pop()!;
      const upNode = Object.hasOwn(graph.nodes, up) ? graph.nodes[up] : undefined;
      if (found.has(up) || !upNode || !isPerStep(defOf(upNode.type))) continue;
      found.add(up);
      for (const l of Object.values(upNode.inputs ?? {})) stack.push(l.node);
    }
    if (found.size) out.set(id, [...found]);
  }
  return out;
}
