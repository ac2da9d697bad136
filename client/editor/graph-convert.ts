import type { NodeDef } from '../../nodes/define.js';
import type { Graph, GraphIssue, GraphNode, NodeMode } from '../../nodes/graph-format.js';
import { GRAPH_FORMAT, GRAPH_VERSION, formatIssue, parseGraph } from '../../nodes/graph-format.js';

/**
 * The editor-neutral shape of a graph: what the canvas shows, with nothing of rete in it. The rete adapter builds
 * its nodes from this and reads it back; everything that touches the graph format goes through this file.
 */
export type ParamValue = string | number | boolean | null;

export interface Position {
  readonly x: number;
  readonly y: number;
}

export interface ModelNode {
  readonly id: string;
  readonly type: string;
  readonly params: Readonly<Record<string, ParamValue>>;
  readonly position: Position;
  readonly mode?: NodeMode;
  /** The user's name for the node, shown instead of its type's title. */
  readonly title?: string;
  readonly color?: string;
  readonly collapsed?: boolean;
}

/** A titled frame around `nodes`; its bounds follow them, so it has no position of its own. */
export interface ModelGroup {
  readonly id: string;
  readonly title: string;
  readonly color?: string;
  readonly nodes: readonly string[];
}

/** A text note on the canvas; it never executes. */
export interface ModelNote {
  readonly id: string;
  readonly text: string;
  readonly color?: string;
  readonly position: Position;
  readonly width?: number;
  readonly height?: number;
}

export interface ModelLink {
  readonly source: string;
  readonly sourceOutput: string;
  readonly target: string;
  readonly targetInput: string;
}

export interface GraphMeta {
  readonly name?: string;
  readonly description?: string;
}

export interface EditorModel {
  readonly meta?: GraphMeta;
  readonly nodes: readonly ModelNode[];
  readonly links: readonly ModelLink[];
  readonly groups?: readonly ModelGroup[];
  readonly notes?: readonly ModelNote[];
}

export type DefLookup = (type: string) => NodeDef | undefined;

export type ImportResult =
  | { readonly ok: true; readonly model: EditorModel; readonly warnings: readonly string[] }
  | { readonly ok: false; readonly errors: readonly string[] };

/** Where nodes without `ui` go: columns by depth, so an imported hand-written graph is readable before arranging. */
const COLUMN_WIDTH = 340;
const ROW_HEIGHT = 260;

export function defaultParams(def: NodeDef): Record<string, ParamValue> {
  const params: Record<string, ParamValue> = {};
  for (const [name, p] of Object.entries(def.params)) params[name] = p.default;
  return params;
}

/**
 * Turns untrusted JSON into a model. Structural problems and unknown node types are errors (nothing is loaded);
 * links to missing nodes or sockets and unknown params are dropped with a warning, because the rest of the graph is
 * still worth editing.
 */
export function importGraph(value: unknown, lookup: DefLookup): ImportResult {
  const parsed = parseGraph(value);
  if (!parsed.graph) return { ok: false, errors: parsed.issues.map((i: GraphIssue) => formatIssue(i)) };
  const graph = parsed.graph;
  const errors: string[] = [];
  for (const [id, node] of Object.entries(graph.nodes)) {
    if (!lookup(node.type)) errors.push(`node "${id}": unknown node type "${node.type}"`);
  }
  if (errors.length) return { ok: false, errors };
  const warnings: string[] = [];
  return { ok: true, model: graphToModel(graph, lookup, warnings), warnings };
}

/** Graph → model. Missing params take their defaults; missing positions are laid out by depth. */
export function graphToModel(graph: Graph, lookup: DefLookup, warnings: string[] = []): EditorModel {
  const entries = Object.entries(graph.nodes);
  const ids = new Set(entries.map(([id]) => id));
  const links: ModelLink[] = [];
  const nodes: ModelNode[] = [];
  const fallback = fallbackPositions(graph);

  for (const [id, node] of entries) {
    const def = lookup(node.type);
    const params: Record<string, ParamValue> = def ? defaultParams(def) : {};
    for (const [name, value] of Object.entries(node.params ?? {})) {
      if (def && !(name in def.params)) {
        warnings.push(`node "${id}": dropped unknown param "${name}"`);
        continue;
      }
      params[name] = value as ParamValue;
    }
    nodes.push({
      id, type: node.type, params, position: node.ui ? { x: node.ui.x, y: node.ui.y } : fallback.get(id) ?? { x: 0, y: 0 },
      ...(node.mode ? { mode: node.mode } : {}),
      ...(node.ui?.title !== undefined ? { title: node.ui.title } : {}),
      ...(node.ui?.color ? { color: node.ui.color } : {}),
      ...(node.ui?.collapsed ? { collapsed: true } : {}),
    });

    for (const [input, link] of Object.entries(node.inputs ?? {})) {
      if (def && !(input in def.inputs)) {
        warnings.push(`node "${id}": dropped link to unknown input "${input}"`);
        continue;
      }
      if (!ids.has(link.node)) {
        warnings.push(`node "${id}": dropped link from missing node "${link.node}"`);
        continue;
      }
      const sourceDef = lookup(graph.nodes[link.node]?.type ?? '');
      if (sourceDef && !(link.output in sourceDef.outputs)) {
        warnings.push(`node "${id}": dropped link from unknown output "${link.node}.${link.output}"`);
        continue;
      }
      links.push({ source: link.node, sourceOutput: link.output, target: id, targetInput: input });
    }
  }
  const groups: ModelGroup[] = Object.entries(graph.groups ?? {}).map(([id, g]) => ({
    id, title: g.title, ...(g.color ? { color: g.color } : {}), nodes: g.nodes.filter((n) => ids.has(n)),
  }));
  const notes: ModelNote[] = Object.entries(graph.notes ?? {}).map(([id, n]) => ({
    id, text: n.text, ...(n.color ? { color: n.color } : {}), position: { x: n.ui.x, y: n.ui.y },
    ...(n.ui.width ? { width: n.ui.width } : {}), ...(n.ui.height ? { height: n.ui.height } : {}),
  }));
  return { ...(graph.meta ? { meta: { ...graph.meta } } : {}), nodes, links, ...(groups.length ? { groups } : {}), ...(notes.length ? { notes } : {}) };
}

/**
 * Model → graph (the current version). Every param is written out, defaults included, so a saved graph means the same thing even after
 * a definition's default changes. Positions are rounded: sub-pixel drags are noise in a diff.
 */
export function modelToGraph(model: EditorModel): Graph {
  const inputsByNode = new Map<string, Record<string, { node: string; output: string }>>();
  for (const l of model.links) {
    const inputs = inputsByNode.get(l.target) ?? {};
    inputs[l.targetInput] = { node: l.source, output: l.sourceOutput };
    inputsByNode.set(l.target, inputs);
  }
  const nodes: Record<string, GraphNode> = {};
  for (const n of model.nodes) {
    const node: GraphNode = { type: n.type };
    if (Object.keys(n.params).length) node.params = { ...n.params };
    const inputs = inputsByNode.get(n.id);
    if (inputs) node.inputs = sortKeys(inputs);
    if (n.mode) node.mode = n.mode;
    node.ui = {
      x: Math.round(n.position.x), y: Math.round(n.position.y),
      ...(n.title !== undefined ? { title: n.title } : {}),
      ...(n.color ? { color: n.color } : {}),
      ...(n.collapsed ? { collapsed: true } : {}),
    };
    nodes[n.id] = node;
  }
  const meta = model.meta && (model.meta.name !== undefined || model.meta.description !== undefined) ? { ...model.meta } : undefined;
  const groups = model.groups?.length
    ? Object.fromEntries(model.groups.map((g) => [g.id, { title: g.title, ...(g.color ? { color: g.color } : {}), nodes: [...g.nodes] }]))
    : undefined;
  const notes = model.notes?.length
    ? Object.fromEntries(model.notes.map((n) => [n.id, {
      text: n.text, ...(n.color ? { color: n.color } : {}),
      ui: { x: Math.round(n.position.x), y: Math.round(n.position.y), ...(n.width ? { width: Math.round(n.width) } : {}), ...(n.height ? { height: Math.round(n.height) } : {}) },
    }]))
    : undefined;
  return { format: GRAPH_FORMAT, version: GRAPH_VERSION, ...(meta ? { meta } : {}), nodes, ...(groups ? { groups } : {}), ...(notes ? { notes } : {}) };
}

function sortKeys<T>(record: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

/** Depth = longest path from a node without inputs; cycles (invalid anyway) are cut where they are met. */
function fallbackPositions(graph: Graph): Map<string, Position> {
  const depth = new Map<string, number>();
  const visiting = new Set<string>();
  const depthOf = (id: string): number => {
    const known = depth.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0;
    visiting.add(id);
    let d = 0;
    for (const link of Object.values(graph.nodes[id]?.inputs ?? {})) {
      if (graph.nodes[link.node]) d = Math.max(d, depthOf(link.node) + 1);
    }
    visiting.delete(id);
    depth.set(id, d);
    return d;
  };
  const rows = new Map<number, number>();
  const out = new Map<string, Position>();
  for (const id of Object.keys(graph.nodes)) {
    const d = depthOf(id);
    const row = rows.get(d) ?? 0;
    rows.set(d, row + 1);
    out.set(id, { x: d * COLUMN_WIDTH, y: row * ROW_HEIGHT });
  }
  return out;
}

/** A node id that is valid in the graph format and not yet taken: `<snake_type>_<n>`. */
export function freshNodeId(type: string, taken: ReadonlySet<string>): string {
  const base = type
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1_$2')
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .replace(/[^A-Za-z0-9_.:-]/g, '_')
    .toLowerCase() || 'node';
  for (let n = 1; ; n++) {
    const id = `${base}_${n}`;
    if (!taken.has(id)) return id;
  }
}

/**
 * Prepares a model for insertion next to existing nodes (paste, duplicate): ids that collide are renamed, links
 * follow the renames, links to nodes outside the inserted set are dropped, and everything moves by `offset`.
 */
export function remapForInsert(model: EditorModel, taken: ReadonlySet<string>, offset: Position): EditorModel {
  const used = new Set(taken);
  const rename = new Map<string, string>();
  for (const n of model.nodes) {
    const id = used.has(n.id) ? freshNodeId(n.type, used) : n.id;
    used.add(id);
    rename.set(n.id, id);
  }
  const nodes = model.nodes.map((n) => ({
    ...n,
    id: rename.get(n.id) ?? n.id,
    params: { ...n.params },
    position: { x: n.position.x + offset.x, y: n.position.y + offset.y },
  }));
  const links: ModelLink[] = [];
  for (const l of model.links) {
    const source = rename.get(l.source);
    const target = rename.get(l.target);
    if (source && target) links.push({ ...l, source, target });
  }
  return { ...(model.meta ? { meta: model.meta } : {}), nodes, links };
}

/** The part of a model made of `ids` and the links among them. */
export function subModel(model: EditorModel, ids: ReadonlySet<string>): EditorModel {
  return {
    nodes: model.nodes.filter((n) => ids.has(n.id)),
    links: model.links.filter((l) => ids.has(l.source) && ids.has(l.target)),
  };
}

/** Top-left corner of the nodes' positions, used to place pasted nodes where the pointer is. */
export function modelOrigin(model: EditorModel): Position {
  if (!model.nodes.length) return { x: 0, y: 0 };
  return {
    x: Math.min(...model.nodes.map((n) => n.position.x)),
    y: Math.min(...model.nodes.map((n) => n.position.y)),
  };
}
