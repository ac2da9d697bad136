const GRAPH_KEY = 'fusegraph.graph';
const CLIENT_KEY = 'fusegraph.clientId';

/** The working graph, saved on every change so a reload (or a crash) loses nothing. */
export function saveGraph(graph: unknown): void {
  try {
    localStorage.setItem(GRAPH_KEY, JSON.stringify(graph));
  } catch {
    // Storage full or disabled (private mode): the editor still works, it just forgets on reload.
  }
}

export function loadSavedGraph(): unknown {
  try {
    const text = localStorage.getItem(GRAPH_KEY);
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** One id per browser profile, so the server can route run events of this editor back to it. */
export function clientId(): string {
  let id = localStorage.getItem(CLIENT_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    localStorage.setItem(CLIENT_KEY, id);
  }
  return id;
}
