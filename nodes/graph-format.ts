import { z } from 'zod';
import { migrateGraph } from './graph-migrations.js';

export const GRAPH_FORMAT = 'fusegraph';
/** The version this FuseGraph writes. Older versions are migrated on the way in (graph-migrations.ts). */
export const GRAPH_VERSION = 2;

const nodeId = z.string().min(1).max(100).regex(/^[A-Za-z0-9_.:-]+$/, 'ids use letters, digits, _ . : -');

export const LinkSchema = z.strictObject({ node: nodeId, output: z.string().min(1) });

const jsonValue: z.ZodType<unknown> = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const color = z.string().regex(/^#[0-9a-fA-F]{6}$/, 'colours are #rrggbb');

/**
 * How a node takes part in a run (v2). `bypass`: the node is left out and each of its outputs is fed by its first
 * input of the same socket type; `mute`: the node is left out with its outputs. Absent = it runs.
 */
export const NODE_MODES = ['bypass', 'mute'] as const;
export type NodeMode = (typeof NODE_MODES)[number];

export const GraphNodeSchema = z.strictObject({
  type: z.string().min(1),
  params: z.record(z.string(), jsonValue).optional(),
  inputs: z.record(z.string(), LinkSchema).optional(),
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
  meta: z.strictObject({ name: z.string().optional(), description: z.string().optional() }).optional(),
  nodes: z.record(nodeId, GraphNodeSchema),
  groups: z.record(nodeId, GraphGroupSchema).optional(),
  notes: z.record(nodeId, GraphNoteSchema).optional(),
});

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
  | 'bypass_type';

/**
 * Parses untrusted JSON into the current graph shape, migrating older versions first (graph-migrations.ts), so
 * every entry point (file, HTTP, PNG chunk, browser storage, stored queue rows) loads v1 graphs forever. Structural
 * problems come back as issues (all of them); semantic checks (types, links, cycles, params) are the validator's job.
 */
export function parseGraph(value: unknown): { graph: Graph; issues: [] } | { graph: null; issues: GraphIssue[] } {
  const migrated = migrateGraph(value);
  if ('issue' in migrated) return { graph: null, issues: [migrated.issue] };
  const parsed = GraphSchema.safeParse(migrated.value);
  if (parsed.success) return { graph: parsed.data, issues: [] };
  return { graph: null, issues: parsed.error.issues.map(zodIssueToGraphIssue) };
}

function zodIssueToGraphIssue(issue: z.core.$ZodIssue): GraphIssue {
  const path = issue.path.map(String);
  // nodes.<id>.<field>... names the node; everything else is a top-level field.
  const inNode = path[0] === 'nodes' && path.length >= 2;
  const node = inNode ? (path[1] ?? null) : null;
  const fieldPath = inNode ? path.slice(2) : path;
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  }
  return { node, field: fieldPath.length ? fieldPath.join('.') : null, code: 'format', message };
}

export function formatIssue(i: GraphIssue): string {
  const where = [i.node ? `node "${i.node}"` : null, i.field ? `field "${i.field}"` : null].filter(Boolean).join(', ');
  const ea = i.expected !== undefined || i.actual !== undefined ? ` (expected ${i.expected ?? '?'}, got ${i.actual ?? '?'})` : '';
  return `${where ? `${where}: ` : ''}${i.message}${ea} [${i.code}]`;
}
