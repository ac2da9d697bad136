import type { Graph } from '../../nodes/graph-format.js';
import { formatIssue } from '../../nodes/graph-format.js';
import { cancelRun, fetchRun, fetchRuns, submitRun } from '../api/http.js';
import type { SocketState } from '../api/run-socket.js';
import { RunSocket } from '../api/run-socket.js';
import type { RunSummary, RunTimings, ServerFrame, SnapshotRun } from '../../nodes/protocol.js';
import type { ToastKind } from '../editor/fuse-editor.js';
import { applyRunMessage, attachIssues, beginRun, mergeSnapshot, statusesFromRun } from './node-status.js';
import type { NodeStatusStore } from './node-status-store.js';

export interface GalleryImage {
  readonly node: string;
  readonly name: string;
  readonly url: string;
}

export interface GalleryRun {
  readonly runId: string;
  readonly status: string;
  readonly images: readonly GalleryImage[];
  readonly error?: string;
  /** Scale-out: the worker that ran it. */
  readonly worker?: string;
}

export interface RunsView {
  /** The run whose node states the canvas shows. */
  readonly active: { readonly runId: string; readonly status: string; readonly position?: number } | null;
  /** Newest first. */
  readonly gallery: readonly GalleryRun[];
  readonly socket: SocketState;
}

interface Deps {
  readonly clientId: string;
  readonly status: NodeStatusStore;
  readonly toast: (message: string, kind?: ToastKind) => void;
  /** Survives a reload, so a page opened mid-run picks the run back up. */
  readonly storage?: Pick<Storage, 'getItem' | 'setItem'>;
}

const ACTIVE_KEY = 'fusegraph.activeRun';
const FINISHED = new Set(['done', 'error', 'cancelled']);

/**
 * Submits and cancels runs and turns the server's run events into node statuses and gallery entries. One
 * instance per page; views read it through `subscribe`/`view`.
 */
export class RunController {
  private state: RunsView = { active: null, gallery: [], socket: 'connecting' };
  private readonly listeners = new Set<() => void>();
  private readonly socket: RunSocket;

  constructor(private readonly deps: Deps) {
    this.socket = new RunSocket({
      clientId: deps.clientId,
      onMessage: (m) => this.handle(m),
      onState: (socket) => this.set({ ...this.state, socket }),
    });
  }

  readonly subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  readonly view = (): RunsView => this.state;

  start(): void {
    this.socket.open();
  }

  dispose(): void {
    this.socket.close();
  }

  /** Fills the gallery from the server's run list and re-attaches to the run that was active before a reload. */
  async restore(): Promise<void> {
    try {
      const runs = await fetchRuns();
      const gallery = runs.map(galleryFromRun).filter((r) => r.images.length > 0 || r.status === 'error');
      this.set({ ...this.state, gallery: mergeGallery(this.state.gallery, gallery) });
    } catch {
      // An older server without a run list: the gallery starts empty.
    }
    const id = this.deps.storage?.getItem(ACTIVE_KEY);
    if (!id) return;
    try {
      const run = await fetchRun(id);
      this.deps.status.replaceAll(statusesFromRun(run));
      this.set({ ...this.state, active: { runId: id, status: run.status } });
      if (!FINISHED.has(run.status)) this.socket.subscribe(id);
    } catch {
      this.deps.storage?.setItem(ACTIVE_KEY, '');
    }
  }

  /** Returns false when the server refused the graph; its issues are then on the nodes. */
  async submit(graph: Graph): Promise<boolean> {
    const res = await submitRun(graph, this.deps.clientId);
    if (!res.ok) {
      this.deps.status.mutate((map) => {
        const cleared = beginRun(map, []);
        const { changed, unplaced } = attachIssues(map, res.issues);
        for (const i of unplaced) this.deps.toast(formatIssue(i), 'error');
        return [...cleared, ...changed];
      });
      const n = res.issues.length;
      this.deps.toast(`The graph has ${n} problem${n === 1 ? '' : 's'}; see the marked nodes`, 'error');
      return false;
    }
    const { run_id: runId, position } = res.run;
    this.deps.status.mutate((map) => beginRun(map, Object.keys(graph.nodes)));
    this.deps.storage?.setItem(ACTIVE_KEY, runId);
    this.socket.subscribe(runId);
    this.set({
      ...this.state,
      active: { runId, status: 'queued', position },
      gallery: [{ runId, status: 'queued', images: [] }, ...this.state.gallery.filter((g) => g.runId !== runId)],
    });
    return true;
  }

  async cancel(): Promise<void> {
    const a = this.state.active;
    if (!a || FINISHED.has(a.status)) return;
    await cancelRun(a.runId);
  }

  handle(msg: ServerFrame): void {
    if (msg.type === 'snapshot') {
      for (const run of msg.runs) this.applySnapshot(run);
      return;
    }
    if (!('run_id' in msg) || !msg.run_id) return;
    const active = this.state.active;
    if (active && msg.run_id === active.runId) {
      this.deps.status.mutate((map) => applyRunMessage(map, msg));
    }
    this.updateRun(msg);
  }

  private applySnapshot(run: SnapshotRun): void {
    const id = run.id;
    if (this.state.active?.runId === id) {
      this.deps.status.mutate((map) => mergeSnapshot(map, run));
      this.set({ ...this.state, active: { runId: id, status: run.status, ...(run.position != null ? { position: run.position } : {}) } });
    }
    if (this.state.gallery.some((g) => g.runId === id)) {
      this.set({ ...this.state, gallery: mergeGallery(this.state.gallery, [galleryFromRun(run)]) });
    }
  }

  private updateRun(msg: Extract<ServerFrame, { run_id: string }>): void {
    const status =
      msg.type === 'queued' ? 'queued'
        : msg.type === 'done' ? 'done'
          : msg.type === 'cancelled' ? 'cancelled'
            : msg.type === 'error' ? 'error'
              : 'running';
    const active = this.state.active?.runId === msg.run_id
      ? { runId: msg.run_id, status, ...(msg.type === 'queued' ? { position: msg.position } : {}) }
      : this.state.active;
    const gallery = this.state.gallery.map((g) => {
      if (g.runId !== msg.run_id) return g;
      const images = msg.type === 'output'
        ? [...g.images, ...msg.images.filter((i) => !g.images.some((x) => x.url === i.url)).map((i) => ({ node: msg.node, ...i }))]
        : g.images;
      return { ...g, status, images, ...(msg.type === 'error' ? { error: msg.message } : {}) };
    });
    this.set({ ...this.state, active, gallery });
    if (FINISHED.has(status)) void this.noteWorker(msg.run_id);
    if (this.state.active?.runId !== msg.run_id) return;
    if (msg.type === 'done') this.deps.toast(`Run finished${timingText(msg.timings)}`, 'success');
    if (msg.type === 'cancelled') this.deps.toast('Run cancelled', 'info');
    if (msg.type === 'error') this.deps.toast(`Run failed${msg.node ? ` at ${msg.node}` : ''}: ${msg.message}`, 'error');
  }

  /** Which worker ran a finished run is in its record, not in the frames (they are the same in every mode). */
  private async noteWorker(runId: string): Promise<void> {
    const run = await fetchRun(runId).catch(() => null);
    if (!run?.worker) return;
    const worker = run.worker;
    this.set({ ...this.state, gallery: this.state.gallery.map((g) => (g.runId === runId ? { ...g, worker } : g)) });
  }

  private set(next: RunsView): void {
    this.state = next;
    for (const l of this.listeners) l();
  }
}

function timingText(timings: RunTimings | undefined): string {
  const ms = timings?.run_ms;
  return typeof ms === 'number' && Number.isFinite(ms) ? ` in ${(ms / 1000).toFixed(1)} s` : '';
}

function galleryFromRun(run: RunSummary): GalleryRun {
  return {
    runId: run.id,
    status: run.status,
    images: run.outputs.filter((o) => o.kind === 'image').map((o) => ({ node: o.node, name: o.name, url: o.url })),
    ...(run.error ? { error: run.error.message } : {}),
    ...(run.worker ? { worker: run.worker } : {}),
  };
}

/** Server records win over what the page had, but a run the page knows and the server list lacks stays. */
function mergeGallery(current: readonly GalleryRun[], incoming: readonly GalleryRun[]): GalleryRun[] {
  const byId = new Map(current.map((g) => [g.runId, g]));
  for (const g of incoming) {
    const old = byId.get(g.runId);
    byId.set(g.runId, old && old.images.length > g.images.length ? { ...g, images: old.images } : g);
  }
  const order = [...current.map((g) => g.runId), ...incoming.map((g) => g.runId).filter((id) => !current.some((g) => g.runId === id))];
  return order.map((id) => byId.get(id)).filter((g): g is GalleryRun => Boolean(g));
}
