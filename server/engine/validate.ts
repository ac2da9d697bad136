import type { Graph, GraphIssue } from '../../nodes/graph-format.js';
import { own, parseGraph } from '../../nodes/graph-format.js';
import type { NodeDef } from '../../nodes/define.js';
import { getNodeDef, socketsCompatible } from '../../nodes/index.js';
import { checkParamValue } from '../../nodes/param-check.js';
import { planRun, resolveRunGraph, type RunPlan } from './plan.js';

// Param checks live in the contract, so the client library's graph builder applies the same ones.
export { checkParamValue, isConfined } from '../../nodes/param-check.js';

/**
 * `graph` is the graph as submitted (after format migration), never rewritten: its muted and bypassed nodes, groups,
 * notes and `ui` are what a run stores and writes into its PNGs. `plan` is what runs, once the graph is valid.
 */
export type ValidationResult =
  | { graph: Graph; plan: RunPlan; issues: [] }
  | { graph: Graph | null; plan: null; issues: GraphIssue[] };

/**
 * Every check a graph must pass before anything runs, all reported at once: format, node types, links,
 * socket types, cycles, params. The checks look at the graph as it will run: planning resolves the node modes
 * first (a muted node is not checked, a link through a bypassed node is checked where it really comes from), and a
 * valid graph comes back with that plan, so nothing downstream plans or validates it again. Paths are checked
 * lexically here (no escape from their root); what the files hold is admission's business (server/engine/prepare.ts).
 */
export function validateGraph(value: unknown): ValidationResult {
  const parsed = parseGraph(value);
  if (!parsed.graph) return { graph: null, plan: null, issues: parsed.issues };
  const submitted = parsed.graph;
  const { graph, issues } = resolveRunGraph(submitted);
  let hasOutput = false;

  for (const [id, node] of Object.entries(graph.nodes)) {
    const def = getNodeDef(node.type);
    if (!def) {
      issues.push({ node: id, field: 'type', code: 'unknown_node_type', message: `unknown node type "${node.type}"`, actual: node.type });
      continue;
    }
    if (def.output) hasOutput = true;
    checkInputs(graph, id, def, issues);
    checkParams(id, def, node.params ?? {}, issues);
  }
  if (!hasOutput) {
    issues.push({
      node: null, field: 'nodes', code: 'no_output_node',
      message: 'the graph has no output node (SaveImage or SaveLatent), so nothing would run',
    });
  }
  for (const cycle of findCycles(graph)) {
    issues.push({
      node: cycle[0] ?? null, field: 'inputs', code: 'cycle',
      message: `cycle through nodes ${cycle.map((n) => `"${n}"`).join(' → ')} → "${cycle[0]}"`,
    });
  }
  return issues.length ? { graph: submitted, plan: null, issues } : { graph: submitted, plan: planRun(submitted, graph), issues: [] };
}

function checkInputs(graph: Graph, id: string, def: NodeDef, issues: GraphIssue[]): void {
  const links = own(graph.nodes, id)?.inputs ?? {};
  for (const name of Object.keys(links)) {
    if (!Object.hasOwn(def.inputs, name)) {
      issues.push({
        node: id, field: `inputs.${name}`, code: 'unknown_input',
        message: `${def.type} has no input "${name}"`, expected: Object.keys(def.inputs).join(', ') || 'no inputs', actual: name,
      });
    }
  }
  for (const [name, input] of Object.entries(def.inputs)) {
    const link = own(links, name);
    const field = `inputs.${name}`;
    if (!link) {
      if (!input.optional) {
        issues.push({ node: id, field, code: 'missing_input', message: `required input "${name}" is not connected`, expected: `a ${input.type} link` });
      }
      continue;
    }
    const source = own(graph.nodes, link.node);
    if (!source) {
      issues.push({ node: id, field, code: 'missing_link_node', message: `input "${name}" links to node "${link.node}", which does not exist`, actual: link.node });
      continue;
    }
    const sourceDef = getNodeDef(source.type);
    if (!sourceDef) continue; // reported as unknown_node_type on the source
    const output = own(sourceDef.outputs, link.output);
    if (!output) {
      issues.push({
        node: id, field, code: 'missing_link_output',
        message: `input "${name}" links to output "${link.output}" of "${link.node}" (${source.type}), which has no such output`,
        expected: Object.keys(sourceDef.outputs).join(', ') || 'no outputs', actual: link.output,
      });
      continue;
    }
    if (!socketsCompatible(output.type, input.type)) {
      issues.push({
        node: id, field, code: 'type_mismatch',
        message: `input "${name}" takes ${input.type} but "${link.node}.${link.output}" is ${output.type}`,
        expected: input.type, actual: output.type,
      });
    }
  }
}

function checkParams(id: string, def: NodeDef, params: Record<string, unknown>, issues: GraphIssue[]): void {
  for (const name of Object.keys(params)) {
    if (!Object.hasOwn(def.params, name)) {
      issues.push({
        node: id, field: `params.${name}`, code: 'unknown_param',
        message: `${def.type} has no param "${name}"`, expected: Object.keys(def.params).join(', ') || 'no params', actual: name,
      });
    }
  }
  for (const [name, pdef] of Object.entries(def.params)) {
    // An absent param takes its default, which must pass too (a LoadModel without a path has none).
    const issue = checkParamValue(pdef, Object.hasOwn(params, name) ? params[name] : pdef.default);
    if (issue) issues.push({ node: id, field: `params.${name}`, ...issue });
  }
}

/**
 * Nodes on cycles, one list per strongly connected component that loops (Tarjan's algorithm with an explicit
 * stack: a long chain of nodes must not exhaust the call stack).
 */
function findCycles(graph: Graph): string[][] {
  const succ = new Map<string, string[]>();
  for (const [id, node] of Object.entries(graph.nodes)) {
    for (const link of Object.values(node.inputs ?? {})) {
      if (!own(graph.nodes, link.node)) continue;
      const list = succ.get(link.node) ?? [];
      list.push(id);
      succ.set(link.node, list);
    }
  }
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const open = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
  };
  for (const root of Object.keys(graph.nodes)) {
    if (idx.has(root)) continue;
    open(root);
    // Each frame is a node and the position of the next successor to look at.
    const frames: [string, number][] = [[root, 0]];
    while (frames.length) {
      const frame = frames.at(-1)!;
      const [v, i] = frame;
      const next = (succ.get(v) ?? [])[i];
      if (next !== undefined) {
        frame[1] = i + 1;
        if (!idx.has(next)) {
          open(next);
          frames.push([next, 0]);
        } else if (onStack.has(next)) {
          low.set(v, Math.min(low.get(v)!, idx.get(next)!));
        }
        continue;
      }
      frames.pop();
      const parent = frames.at(-1);
      if (parent) low.set(parent[0], Math.min(low.get(parent[0])!, low.get(v)!));
      if (low.get(v) !== idx.get(v)) continue;
      const comp: string[] = [];
      let w: string | undefined;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      const selfLoop = (succ.get(v) ?? []).includes(v);
      if (comp.length > 1 || selfLoop) cycles.push(comp.reverse());
    }
  }
  return cycles;
}
