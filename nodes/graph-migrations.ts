import type { GraphIssue } from './graph-format.js';

/**
 * The graph format's history, one step per version: MIGRATIONS[n] turns a version-n graph into version n + 1.
 * A step only rewrites what changed in that version and never validates (the current schema does that after the
 * last step), so a broken v1 graph is reported with the same field paths as a broken current one.
 */
const MIGRATIONS: Readonly<Record<number, (graph: Record<string, unknown>) => Record<string, unknown>>> = {
  // v2 added node modes (bypass/mute), node titles/colours/collapse, groups and notes; a v1 graph has none of them.
  1: (graph) => ({ ...graph, version: 2 }),
};

/** The version this code writes: one past the last migration. Kept in step with GRAPH_VERSION by a test. */
export const LATEST_GRAPH_VERSION = Math.max(...Object.keys(MIGRATIONS).map(Number)) + 1;

/**
 * Brings a graph of any older version up to the current one. Anything that is not a versioned FuseGraph object
 * passes through unchanged for the schema to report; a newer version is refused with a message saying so.
 */
export function migrateGraph(value: unknown): { value: unknown } | { issue: GraphIssue } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { value };
  const version = (value as { version?: unknown }).version;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) return { value };
  if (version > LATEST_GRAPH_VERSION) {
    return {
      issue: {
        node: null, field: 'version', code: 'future_version',
        message: `graph version ${version} is newer than this FuseGraph understands (${LATEST_GRAPH_VERSION}); update FuseGraph`,
        expected: `<= ${LATEST_GRAPH_VERSION}`, actual: String(version),
      },
    };
  }
  let graph = value as Record<string, unknown>;
  for (let v = version; v < LATEST_GRAPH_VERSION; v++) graph = MIGRATIONS[v]!(graph);
  return { value: graph };
}
