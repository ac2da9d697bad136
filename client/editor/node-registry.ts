import type { NodeDef } from '../../nodes/define.js';

/** Palette order of categories: the order data flows through a fusion graph. Unknown categories go last. */
const CATEGORY_ORDER = ['model', 'conditioning', 'latent', 'sampling', 'fusion', 'image'];

export interface CategoryGroup {
  readonly category: string;
  readonly defs: readonly NodeDef[];
}

/**
 * The node types the server announced. The client knows no node type of its own: palette, context menu, sockets and
 * widgets are all built from this.
 */
export class NodeRegistry {
  private readonly byType: ReadonlyMap<string, NodeDef>;

  constructor(readonly defs: readonly NodeDef[]) {
    this.byType = new Map(defs.map((d) => [d.type, d]));
  }

  get(type: string): NodeDef | undefined {
    return this.byType.get(type);
  }

  /** Categories in flow order, types in server (palette) order, filtered by a case-insensitive name search. */
  groups(search = ''): CategoryGroup[] {
    const q = search.trim().toLowerCase();
    const match = (d: NodeDef) => !q || d.title.toLowerCase().includes(q) || d.type.toLowerCase().includes(q);
    const categories = [...new Set(this.defs.map((d) => d.category))].sort(
      (a, b) => rank(a) - rank(b) || a.localeCompare(b),
    );
    return categories
      .map((category) => ({ category, defs: this.defs.filter((d) => d.category === category && match(d)) }))
      .filter((g) => g.defs.length > 0);
  }
}

function rank(category: string): number {
  const i = CATEGORY_ORDER.indexOf(category);
  return i < 0 ? CATEGORY_ORDER.length : i;
}

/** Checks the shape of `GET /api/nodes` enough that a bad server answer fails here, not deep inside rendering. */
export function parseNodesResponse(body: unknown): NodeDef[] {
  if (typeof body !== 'object' || body === null) throw new Error('node list: not an object');
  const { version, nodes } = body as { version?: unknown; nodes?: unknown };
  if (version !== 1) throw new Error(`node list: unsupported version ${String(version)}`);
  if (!Array.isArray(nodes)) throw new Error('node list: "nodes" is not an array');
  for (const n of nodes) {
    const d = n as Partial<NodeDef> | null;
    if (!d || typeof d.type !== 'string' || typeof d.title !== 'string' || typeof d.inputs !== 'object' ||
      typeof d.outputs !== 'object' || typeof d.params !== 'object') {
      throw new Error(`node list: malformed definition ${JSON.stringify(n)?.slice(0, 80)}`);
    }
  }
  return nodes as NodeDef[];
}
