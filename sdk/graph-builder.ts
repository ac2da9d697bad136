import { GRAPH_FORMAT, GRAPH_VERSION, type Graph, type GraphNode, type NodeMode } from '../nodes/graph-format.js';
import { getNodeDef, type NodeDefOf, type NodeType } from '../nodes/index.js';
import { checkParamValue } from '../nodes/param-check.js';
import type { SocketType } from '../nodes/socket-types.js';

/** An output socket of a node in a builder; its socket type is part of its TypeScript type. */
export interface OutputRef<S extends SocketType = SocketType> {
  readonly node: string;
  readonly output: string;
  readonly type: S;
}

type Def<T extends NodeType> = NodeDefOf<T>;
type Ref<D> = D extends { readonly type: infer S extends SocketType } ? OutputRef<S> : never;

/** What a param accepts: an enum's options as literals, numbers, booleans or strings. Ranges are checked by add(). */
type ParamInput<D> = D extends { kind: 'enum'; options: readonly (infer O)[] }
  ? O
  : D extends { kind: 'int' | 'float' }
    ? number
    : D extends { kind: 'bool' }
      ? boolean
      : string;

export type ParamsOf<T extends NodeType> = { -readonly [K in keyof Def<T>['params']]?: ParamInput<Def<T>['params'][K]> };

type InputDefs<T extends NodeType> = Def<T>['inputs'];
type RequiredInput<T extends NodeType> = { [K in keyof InputDefs<T>]: InputDefs<T>[K] extends { optional: true } ? never : K }[keyof InputDefs<T>];
type OptionalInput<T extends NodeType> = Exclude<keyof InputDefs<T>, RequiredInput<T>>;

/** A node's links: each input takes an output of the same socket type; optional inputs may be left out. */
export type InputsOf<T extends NodeType> = { -readonly [K in RequiredInput<T>]: Ref<InputDefs<T>[K]> } & {
  -readonly [K in OptionalInput<T>]?: Ref<InputDefs<T>[K]>;
};

export interface NodeRef<T extends NodeType> {
  readonly id: string;
  readonly type: T;
  readonly out: { readonly [K in keyof Def<T>['outputs']]: Ref<Def<T>['outputs'][K]> };
}

export interface AddOptions {
  /** The node id in the graph; default `<Type>_<n>`. */
  readonly id?: string;
  readonly ui?: GraphNode['ui'];
  readonly mode?: NodeMode;
}

/** A node without required inputs may be added with its type alone; one with them needs params and inputs. */
type AddArgs<T extends NodeType> = [RequiredInput<T>] extends [never]
  ? [params?: ParamsOf<T>, inputs?: InputsOf<T>, options?: AddOptions]
  : [params: ParamsOf<T> | undefined, inputs: InputsOf<T>, options?: AddOptions];

/** A node, field and reason the builder refused, as the server's graph issues name them. */
export class GraphBuildError extends Error {
  override readonly name = 'GraphBuildError';
  constructor(
    readonly node: string | null,
    readonly field: string | null,
    message: string,
  ) {
    super(`${node === null ? 'graph' : `node "${node}"`}${field ? `, field "${field}"` : ''}: ${message}`);
  }
}

/**
 * Builds graphs from the node definitions: `g.add('EncodePrompt', { text }, { model: m.out.model })`. TypeScript
 * checks node types, param names, enum values and socket types of links; add() checks the rest (ranges, lengths,
 * paths, required inputs) with the contract's own checks, so a built graph passes the server's validation of them.
 */
export class GraphBuilder {
  private readonly nodes: Record<string, GraphNode> = {};
  private readonly counts = new Map<string, number>();

  constructor(private readonly meta?: Graph['meta']) {}

  add<T extends NodeType>(type: T, ...args: AddArgs<T>): NodeRef<T> {
    const [params, inputs, options] = args as [ParamsOf<T>?, Record<string, OutputRef | undefined>?, AddOptions?];
    const def = getNodeDef(type);
    if (!def) throw new GraphBuildError(options?.id ?? null, 'type', `unknown node type "${type}"`);
    const id = options?.id ?? this.nextId(type);
    if (Object.hasOwn(this.nodes, id)) throw new GraphBuildError(id, null, 'a node with this id is already in the graph');

    const given = (params ?? {}) as Record<string, unknown>;
    for (const name of Object.keys(given)) {
      if (!Object.hasOwn(def.params, name)) throw new GraphBuildError(id, `params.${name}`, `${type} has no param "${name}"`);
    }
    for (const [name, pdef] of Object.entries(def.params)) {
      const problem = checkParamValue(pdef, Object.hasOwn(given, name) ? given[name] : pdef.default);
      if (problem) {
        const ea = problem.expected !== undefined ? ` (expected ${problem.expected}, got ${problem.actual ?? '?'})` : '';
        throw new GraphBuildError(id, `params.${name}`, `${problem.message}${ea}`);
      }
    }

    const links: Record<string, { node: string; output: string }> = {};
    const wired = inputs ?? {};
    for (const name of Object.keys(wired)) {
      if (!Object.hasOwn(def.inputs, name)) throw new GraphBuildError(id, `inputs.${name}`, `${type} has no input "${name}"`);
    }
    for (const [name, idef] of Object.entries(def.inputs)) {
      const ref = Object.hasOwn(wired, name) ? wired[name] : undefined;
      if (ref === undefined) {
        if (!idef.optional) throw new GraphBuildError(id, `inputs.${name}`, `needs a ${idef.type} link`);
        continue;
      }
      if (!Object.hasOwn(this.nodes, ref.node)) throw new GraphBuildError(id, `inputs.${name}`, `links to "${ref.node}", which is not in this graph`);
      if (ref.type !== idef.type) throw new GraphBuildError(id, `inputs.${name}`, `takes ${idef.type}, got ${ref.type} from "${ref.node}"`);
      links[name] = { node: ref.node, output: ref.output };
    }

    const node: GraphNode = { type };
    if (params !== undefined) node.params = { ...given } as GraphNode['params'];
    if (Object.keys(links).length) node.inputs = links;
    if (options?.mode !== undefined) node.mode = options.mode;
    if (options?.ui !== undefined) node.ui = { ...options.ui };
    this.nodes[id] = node;

    const out: Record<string, OutputRef> = {};
    for (const [name, odef] of Object.entries(def.outputs)) out[name] = { node: id, output: name, type: odef.type };
    return { id, type, out } as unknown as NodeRef<T>;
  }

  /**
   * The graph in format `version` (default: the current one). Version 1 has no node modes, titles, colours or
   * collapse; a graph that uses them cannot be written as v1.
   */
  build(options: { readonly version?: 1 | typeof GRAPH_VERSION } = {}): Graph {
    const version = options.version ?? GRAPH_VERSION;
    if (version === 1) {
      for (const [id, node] of Object.entries(this.nodes)) {
        if (node.mode !== undefined) throw new GraphBuildError(id, 'mode', 'format v1 has no node modes; build v2');
        const ui = node.ui ?? {};
        for (const field of ['title', 'color', 'collapsed'] as const) {
          if (Object.hasOwn(ui, field)) throw new GraphBuildError(id, `ui.${field}`, 'format v1 has no titles, colours or collapse; build v2');
        }
      }
    }
    const nodes = structuredClone(this.nodes);
    // The value is the current Graph shape; for v1 only the version number differs (graph-migrations.ts).
    return { format: GRAPH_FORMAT, version, ...(this.meta ? { meta: { ...this.meta } } : {}), nodes } as Graph;
  }

  private nextId(type: string): string {
    let n = this.counts.get(type) ?? 0;
    let id: string;
    do {
      n += 1;
      id = `${type}_${n}`;
    } while (Object.hasOwn(this.nodes, id));
    this.counts.set(type, n);
    return id;
  }
}

/** Starts a graph: `const g = graph({ name: 'my sweep' })`. */
export function graph(meta?: Graph['meta']): GraphBuilder {
  return new GraphBuilder(meta);
}
