import { z } from 'zod';

export const GRAPH_FORMAT = 'fusegraph';
export const GRAPH_VERSION = 1;

const nodeId = z.string().min(1).max(100).regex(/^[A-Za-z0-9_.:-]+$/, 'ids use letters, digits, _ . : -');

export const LinkSchema = z.strictObject({ node: nodeId, output: z.string().min(1) });

const jsonValue: z.ZodType<unknown> = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const GraphNodeSchema = z.strictObject({
  type: z.string().min(1),
  params: z.record(z.string(), jsonValue).optional(),
  inputs: z.record(z.string(), LinkSchema).optional(),
  ui: z.strictObject({ x: z.number(), y: z.number() }).optional(),
});

export const GraphSchema = z.strictObject({
  format: z.literal(GRAPH_FORMAT),
  version: z.literal(GRAPH_VERSION),
  meta: z.strictObject({ name: z.string().optional(), description: z.string().optional() }).optional(),
  nodes: z.record(nodeId, GraphNodeSchema),
});

export type GraphLink = z.infer<typeof LinkSchema>;
export type GraphNode = z.infer<typeof GraphNodeSchema>;
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
  | 'no_output_node';

/**
 * Parses untrusted JSON into a graph v1 shape. Structural problems come back as issues (all of them);
 * semantic checks (types, links, cycles, params) are the validator's job.
 */
export function parseGraph(value: unknown): { graph: Graph; issues: [] } | { graph: null; issues: GraphIssue[] } {
  if (typeof value === 'object' && value !== null && 'version' in value) {
    const v = (value as { version: unknown }).version;
    if (typeof v === 'number' && v > GRAPH_VERSION) {
      return {
        graph: null,
        issues: [{
          node: null, field: 'version', code: 'future_version',
          message: `graph version ${v} is newer than this FuseGraph understands (${GRAPH_VERSION}); update FuseGraph`,
          expected: `<= ${GRAPH_VERSION}`, actual: String(v),
        }],
      };
    }
  }
  const parsed = GraphSchema.safeParse(value);
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
