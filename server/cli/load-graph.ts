import { readFile, stat } from 'node:fs/promises';
import type { Graph } from '../../nodes/graph-format.js';
import { JSON_LIMITS, parseJsonLimited } from '../../nodes/json-limits.js';
import type { RecordedModel } from '../sd/png-meta.js';
import { isPng, readGraphFromPng, readRecordedModels } from '../sd/png-meta.js';

/** The largest graph file (JSON or PNG) `run` and `validate` read: as large as the server's PNG upload limit. */
export const MAX_GRAPH_FILE_BYTES = 20 * 1024 * 1024;

/**
 * Reads a graph from a .json file or from a PNG that FuseGraph wrote, with the models a PNG's run used (to compare
 * with the files a re-run finds; none for a .json). The graph is untrusted until validated: the file's size, its
 * PNG chunks' CRCs and its JSON's depth are checked before anything is parsed (issue 27), each refusal naming the limit.
 */
export async function loadGraphFile(file: string): Promise<{ graph: unknown; recorded: RecordedModel[] }> {
  let bytes: Buffer;
  try {
    const size = (await stat(file)).size;
    if (size > MAX_GRAPH_FILE_BYTES) throw new Error(`${file}: ${size} bytes, over the limit of ${MAX_GRAPH_FILE_BYTES} for a graph file`);
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${file}: no such file`, { cause: err });
    if (code === 'EISDIR') throw new Error(`${file}: is a directory, not a graph file`, { cause: err });
    throw err;
  }
  if (isPng(bytes)) {
    let graph;
    try {
      graph = readGraphFromPng(bytes);
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`, { cause: err }); // a bad CRC, a chunk over the JSON limits
    }
    if (!graph) throw new Error(`${file}: this PNG carries no FuseGraph graph`);
    return { graph, recorded: readRecordedModels(bytes) };
  }
  try {
    return { graph: parseJsonLimited(bytes.toString('utf8'), { what: 'the graph file', maxLength: Math.max(JSON_LIMITS.maxLength, MAX_GRAPH_FILE_BYTES) }), recorded: [] };
  } catch (err) {
    if (!(err instanceof SyntaxError)) throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
    throw new Error(`${file}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
}

/**
 * Applies `--set NODE.PARAM=VALUE` overrides. VALUE is JSON when it parses as JSON (numbers, booleans, quoted
 * strings), else a plain string. Node ids may contain dots, so the param is the part after the last dot.
 */
export function applyOverrides(value: unknown, sets: readonly string[]): unknown {
  if (!sets.length) return value;
  if (typeof value !== 'object' || value === null) throw new Error('--set needs a graph object');
  const graph = structuredClone(value) as Graph;
  for (const s of sets) {
    const eq = s.indexOf('=');
    const target = eq > 0 ? s.slice(0, eq) : '';
    const dot = target.lastIndexOf('.');
    if (eq <= 0 || dot <= 0 || dot === target.length - 1) throw new Error(`--set "${s}": expected NODE.PARAM=VALUE`);
    const nodeId = target.slice(0, dot);
    const param = target.slice(dot + 1);
    const node = graph.nodes?.[nodeId];
    if (!node) throw new Error(`--set "${s}": the graph has no node "${nodeId}"`);
    const raw = s.slice(eq + 1);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch {
      parsed = raw;
    }
    node.params = { ...(node.params ?? {}), [param]: parsed as string };
  }
  return graph;
}
