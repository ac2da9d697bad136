import type { NodeDef } from './define.js';
import type { Graph, GraphIssue, GraphLink } from './graph-format.js';
import { own } from './graph-format.js';

/**
 * The graph a run executes: muted nodes are left out with everything they output, and each bypassed node is
 * replaced by pass-through links (an output is fed by the node's first input of the same socket type), as ComfyUI
 * does. Consumers of a muted node, or of a bypassed output with no input of its type, get an issue naming them.
 * Bypass chains resolve through several bypassed nodes; nothing here recurses on graph size.
 */
export function resolveModes(graph: Graph, defOf: (type: string) => NodeDef | undefined): { graph: Graph; issues: GraphIssue[] } {
  const nodes = graph.nodes;
  if (!Object.values(nodes).some((n) => n.mode)) return { graph, issues: [] };
  const issues: GraphIssue[] = [];

  /** Where a link really comes from once bypassed nodes are skipped; a string explains why nothing feeds it. */
  const source = (link: GraphLink): GraphLink | string => {
    const seen = new Set<string>();
    let current = link;
    for (;;) {
      const from = own(nodes, current.node);
      if (!from?.mode) return current;
      if (from.mode === 'mute') return `comes from muted node "${current.node}"`;
      if (seen.has(current.node)) return `goes round a loop of bypassed nodes through "${current.node}"`;
      seen.add(current.node);
      const def = defOf(from.type);
      const type = own(def?.outputs, current.output)?.type;
      const through = type && def
        ? Object.keys(def.inputs).map((name) => def.inputs[name]!.type === type && own(from.inputs, name)).find(Boolean)
        : undefined;
      if (!through) return `comes from bypassed node "${current.node}", which has no linked ${type ?? 'matching'} input to pass through`;
      current = through;
    }
  };

  const kept: Graph['nodes'] = {};
  for (const [id, node] of Object.entries(nodes)) {
    if (node.mode) continue;
    const inputs: Record<string, GraphLink> = {};
    for (const [name, link] of Object.entries(node.inputs ?? {})) {
      const from = source(link);
      if (typeof from !== 'string') {
        inputs[name] = from;
        continue;
      }
      const optional = own(defOf(node.type)?.inputs, name)?.optional === true;
      if (!optional) {
        issues.push({
          node: id, field: `inputs.${name}`, code: from.startsWith('comes from bypassed') ? 'bypass_type' : 'muted_input',
          message: `input "${name}" ${from}`,
        });
      }
    }
    kept[id] = { ...node, inputs };
  }
  return { graph: { ...graph, nodes: kept }, issues };
}
