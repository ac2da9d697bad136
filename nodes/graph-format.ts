import { z } from 'zod';
import { migrateGraph } from './graph-migrations.js';

export const GRAPH_FORMAT = 'fusegraph';
/** The version this FuseGraph writes. Older versions are migrated on the way in (graph-migrations.ts). */
export const GRAPH_VERSION = 2;

/**
 * Size caps, so that one request cannot make validation or execution do unbounded work. The bundled graphs use
 * about 30 nodes; the caps are far above any graph a person builds.
 */
export const GRAPH_LIMITS = {
  nodes: 1000,
  /** Characters of a node id, type, input, output or param name. */
  name: 100,
  /** Characters of a string param value (the defs may set a lower maxLength). */
  stringValue: 10_000,
  /** Characters of meta.name / meta.description. */
  meta: 10_000,
} as const;

const nodeId = z.string().min(1).max(GRAPH_LIMITS.name).regex(/^[A-Za-z0-9_.:-]+$/, 'ids use letters, digits, _ . : -');
const name = z.string().min(1).max(GRAPH_LIMITS.name);

export const LinkSchema = z.strictObject({ node: nodeId, output: name });

const jsonValue: z.ZodType<unknown> = z.union([z.string().max(GRAPH_LIMITS.stringValue), z.number(), z.boolean(), z.null()]);

const color = z.string().regex(/^#[0-9a-fA-F]{6}$/, 'colours are #rrggbb');

/**
 * How a node takes part in a run (v2). `bypass`: the node is left out and each of its outputs is fed by its first
 * input of the same socket type; `mute`: the node is left out with its outputs. Absent = it runs.
 */
export const NODE_MODES = ['bypass', 'mute'] as const;
export type NodeMode = (typeof NODE_MODES)[number];

export const GraphNodeSchema = z.strictObject({
  type: name,
  params: z.record(name, jsonValue).optional(),
  inputs: z.record(name, LinkSchema).optional(),
  mode: z.enum(NODE_MODES).optional(),
  /** Editor-only presentation; the server ignores it. */
  ui: z.strictObject({
    x: z.number(),
    y: z.number(),
    title: z.string().max(200).optional(),
    color: color.optional(),
    collapsed: z.boolean().optional(),
  }).optional(),
});

/** A titled frame around some nodes (v2): moving it moves them. Editor-only; the server ignores groups. */
export const GraphGroupSchema = z.strictObject({
  title: z.string().max(200),
  color: color.optional(),
  nodes: z.array(nodeId).max(10_000),
});

/** A text note on the canvas (v2). It is not a node: it never executes. */
export const GraphNoteSchema = z.strictObject({
  text: z.string().max(100_000),
  color: color.optional(),
  ui: z.strictObject({ x: z.number(), y: z.number(), width: z.number().positive().optional(), height: z.number().positive().optional() }),
});

export const GraphSchema = z.strictObject({
  format: z.literal(GRAPH_FORMAT),
  version: z.literal(GRAPH_VERSION),
  meta: z.strictObject({ name: z.string().max(GRAPH_LIMITS.meta).optional(), description: z.string().max(GRAPH_LIMITS.meta).optional() }).optional(),
  nodes: z.record(nodeId, GraphNodeSchema),
  groups: z.record(nodeId, GraphGroupSchema).optional(),
  notes: z.record(nodeId, GraphNoteSchema).optional(),
});

/** `obj[key]` only when it is the object's own property: ids and names such as "constructor" must not find Object.prototype's. */
export function own<T>(obj: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return obj !== undefined && Object.hasOwn(obj, key) ? obj[key] : undefined;
}

export type GraphLink = z.infer<typeof LinkSchema>;
export type GraphNode = z.infer<typeof GraphNodeSchema>;
export type GraphGroup = z.infer<typeof GraphGroupSchema>;
export type GraphNote = z.infer<typeof GraphNoteSchema>;
export type Graph = z.infer<typeof GraphSchema>;

/** One problem found in a graph; the editor shows it on `node` / `field`. */
export interface GraphIssue {
  readonly node: string | null;
  readonly field: string | null;
  readonly code: GraphIssueCode;
  readonly message: string;
  readonly expected?: string;
  readonly actual?: string;
}

export type GraphIssueCode =
  | 'format'
  | 'future_version'
  | 'unknown_node_type'
  | 'unknown_input'
  | 'missing_input'
  | 'missing_link_node'
  | 'missing_link_output'
  | 'type_mismatch'
  | 'cycle'
  | 'param_type'
  | 'param_range'
  | 'unknown_param'
  | 'path_escape'
  | 'no_output_node'
  | 'muted_input'
  | 'bypass_type'
  | 'too_large'
  /** A model folder or file that is missing or unreadable (scale-out: no live worker serves all of the run's models). */
  | 'model_unavailable'
  /** A file FuseGraph reads but cannot run yet (SDXL, inpainting, …): the message says what it is. */
  | 'model_unsupported';

/**
 * Parses untrusted JSON into the current graph shape, migrating older versions first (graph-migrations.ts), so
 * every entry point (file, HTTP, PNG chunk, browser storage, stored queue rows) loads v1 graphs forever. Structural
 * problems come back as issues (all of them); semantic checks (types, links, cycles, params) are the validator's job.
 */
export function parseGraph(value: unknown): { graph: Graph; issues: [] } | { graph: null; issues: GraphIssue[] } {
  const migrated = migrateGraph(value);
  if ('issue' in migrated) return { graph: null, issues: [migrated.issue] };
  value = migrated.value;
  const nodes = typeof value === 'object' && value !== null ? (value as { nodes?: unknown }).nodes : undefined;
  const count = typeof nodes === 'object' && nodes !== null ? Object.keys(nodes).length : 0;
  if (count > GRAPH_LIMITS.nodes) {
    // Refused before parsing, so an oversized body costs one key count.
    return {
      graph: null,
      issues: [{ node: null, field: 'nodes', code: 'format', message: `too many nodes`, expected: `at most ${GRAPH_LIMITS.nodes}`, actual: String(count) }],
    };
  }
  const reserved = reservedKeyIssues(value);
  const parsed = GraphSchema.safeParse(value);
  if (parsed.success && !reserved.length) return { graph: parsed.data, issues: [] };
  return { graph: null, issues: [...reserved, ...(parsed.success ? [] : parsed.error.issues.flatMap(zodIssueToGraphIssues))] };
}

/**
 * "__proto__" as a node id, param or input name: JSON.parse makes it an own key, but a parsed record drops it
 * silently, so it is refused here with its place named.
 */
function reservedKeyIssues(value: unknown): GraphIssue[] {
  const issues: GraphIssue[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const nodes = isObject(value) && Object.hasOwn(value, 'nodes') ? value.nodes : undefined;
  if (!isObject(nodes)) return issues;
  const reserved = (node: string | null, field: string): GraphIssue => ({
    node, field, code: 'format', message: '"__proto__" is a reserved name', actual: '"__proto__"',
  });
  if (Object.hasOwn(nodes, '__proto__')) issues.push(reserved(null, 'nodes.__proto__'));
  for (const id of Object.keys(nodes)) {
    const node = nodes[id];
    if (!isObject(node)) continue;
    for (const part of ['params', 'inputs'] as const) {
      const m = Object.hasOwn(node, part) ? node[part] : undefined;
      if (isObject(m) && Object.hasOwn(m, '__proto__')) issues.push(reserved(id, `${part}.__proto__`));
    }
  }
  return issues;
}

function zodIssueToGraphIssues(issue: z.core.$ZodIssue): GraphIssue[] {
  const path = issue.path.map(String);
  // nodes.<id>.<field>... names the node; everything else is a top-level field.
  const inNode = path[0] === 'nodes' && path.length >= 2;
  const node = inNode ? (path[1] ?? null) : null;
  const fieldPath = inNode ? path.slice(2) : path;
  if (issue.code === 'unrecognized_keys') {
    // One issue per unknown key, each naming itself as the field.
    return issue.keys.map((key) => ({ node, field: [...fieldPath, key].join('.'), code: 'format' as const, message: `unknown field "${key}"` }));
  }
  // An empty path is the graph value itself (not an object, say).
  return [{ node, field: fieldPath.length ? fieldPath.join('.') : 'graph', code: 'format', message: issue.message }];
}

export function formatIssue(i: GraphIssue): string {
  const where = [i.node ? `node "${i.node}"` : null, i.field ? `field "${i.field}"` : null].filter(Boolean).join(', ');
  // Only what is known: "expected …, got ?" reads as if something was found that could not be named.
  const parts = [i.expected !== undefined ? `expected ${i.expected}` : null, i.actual !== undefined ? `got ${i.actual}` : null].filter(Boolean);
  const ea = parts.length ? ` (${parts.join(', ')})` : '';
  return `${where ? `${where}: ` : ''}${i.message}${ea} [${i.code}]`;
}
