import type { NodeDef } from '../../nodes/define.js';
import type { Graph } from '../../nodes/graph-format.js';
import { formatIssue, parseGraph } from '../../nodes/graph-format.js';
import { cancelRun, clearQueue, fetchQueue, fetchRun, fetchRuns, moveRunToFront, setQueuePaused, submitRun } from '../api/http.js';
import type { SocketState } from '../api/run-socket.js';
import { RunSocket } from '../api/run-socket.js';
import type { QueueState, RunProgress, RunSummary, RunTimings, ServerFrame, SnapshotRun } from '../../nodes/protocol.js';
import type { ToastKind } from '../editor/fuse-editor.js';
import type { StatusMap } from './node-status.js';
import { applyRunMessage, attachIssues, beginRun, mergeSnapshot, statusesFromRun } from './node-status.js';
import type { NodeStatusStore } from './node-status-store.js';
import type { StepFeeds } from './step-feeds.js';
import { stepFeeds } from './step-feeds.js';

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

/** A queued or running run of any client, as the queue panel lists it. */
export interface QueueEntry {
  readonly runId: string;
  readonly status: 'queued' | 'running';
  /** Runs ahead of it (0 = next); null while running. */
  readonly position: number | null;
  readonly mine: boolean;
  /** The graph's meta.name, once known. */
  readonly name?: string;
  readonly createdAt: number;
  readonly startedAt: number | null;
  readonly progress: RunProgress | null;
  readonly cancelRequested: boolean;
}

export interface RunsView {
  /** The run whose node states the canvas shows: the one selected in the queue, else the one running now. */
  readonly active: { readonly runId: string; readonly status: string; readonly position?: number } | null;
  /** The run picked in the queue panel, while the canvas is pinned to it. */
  readonly selected: string | null;
  readonly queue: {
    readonly paused: boolean;
    readonly running: readonly QueueEntry[];
    readonly pending: readonly QueueEntry[];
  };
  /** Newest first. */
  readonly gallery: readonly GalleryRun[];
  readonly socket: SocketState;
}

interface Deps {
  readonly clientId: string;
  readonly status: NodeStatusStore;
  readonly toast: (message: string, kind?: ToastKind, key?: string) => void;
  /** Node definitions, to know which nodes a sampler evaluates per step. */
  readonly defOf: (type: string) => NodeDef | undefined;
  /** Survives a reload, so a page opened mid-run picks the run back up. */
  readonly storage?: Pick<Storage, 'getItem' | 'setItem'>;
}

const ACTIVE_KEY = 'fusegraph.activeRun';
const FINISHED = new Set(['done', 'error', 'cancelled']);
/** Toasts about run results replace each other instead of stacking. */
const RUN_TOAST = 'run';
/** Other clients can pause the queue without a frame saying so; this often the panel asks again. */
const QUEUE_POLL_MS = 4000;
/** Bursts of queue frames (a clear, a reorder) become one queue request. */
const QUEUE_REFRESH_DEBOUNCE_MS = 60;

/**
 * Submits, cancels and reorders runs and turns the server's run events (of every client) into the queue panel,
 * node statuses and gallery entries. One instance per page; views read it through `subscribe`/`view`.
 */
export class RunController {
  private state: RunsView = { active: null, selected: null, queue: { paused: false, running: [], pending: [] }, gallery: [], socket: 'connecting' };
  private readonly listeners = new Set<() => void>();
  private readonly socket: RunSocket;
  /** Node statuses per run, so the canvas can switch between runs without losing what each one did. */
  private readonly maps = new Map<string, StatusMap>();
  private readonly feeds = new Map<string, StepFeeds>();
  private readonly names = new Map<string, string>();
  private readonly owners = new Map<string, string | null>();
  private readonly progress = new Map<string, RunProgress>();
  private readonly detailsAsked = new Set<string>();
  private queue: QueueState = { paused: false, concurrency: 1, running: [], pending: [] };
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private poll: ReturnType<typeof setInterval> | null = null;

  constructor(private readonly deps: Deps) {
    this.socket = new RunSocket({
      clientId: deps.clientId,
      onMessage: (m) => this.handle(m),
      onState: (socket) => {
        this.set({ ...this.state, socket });
        if (socket === 'open') this.refreshQueue();
      },
    });
  }

  readonly subscribe = (l: () => void): (() => void) => {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  };

  readonly view = (): RunsView => this.state;

  start(): void {
    this.socket.open();
    this.poll ??= setInterval(() => this.refreshQueue(), QUEUE_POLL_MS);
  }

  dispose(): void {
    this.socket.close();
    if (this.poll) clearInterval(this.poll);
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.poll = null;
  }

  /** Fills the gallery from the server's run list and shows the run that was shown before a reload. */
  async restore(): Promise<void> {
    try {
      const runs = await fetchRuns();
      const gallery = runs.map(galleryFromRun).filter((r) => r.images.length > 0 || r.status === 'error');
      this.set({ ...this.state, gallery: mergeGallery(this.state.gallery, gallery) });
    } catch {
      // An older server without a run list: the gallery starts empty.
    }
    const id = this.deps.storage?.getItem(ACTIVE_KEY);
    if (id && !this.state.active) await this.show(id);
  }

  /** Returns false when the server refused the graph; its issues are then on the nodes. */
  async submit(graph: Graph, front = false): Promise<boolean> {
    const res = await submitRun(graph, this.deps.clientId, front);
    if (!res.ok) {
      this.deps.status.mutate((map) => {
        const cleared = beginRun(map, []);
        const { changed, unplaced } = attachIssues(map, res.issues);
        for (const i of unplaced) this.deps.toast(formatIssue(i), 'error');
        return [...cleared, ...changed];
      });
      const n = res.issues.length;
      this.deps.toast(`The graph has ${n} problem${n === 1 ? '' : 's'}; see the marked nodes`, 'error', RUN_TOAST);
      return false;
    }
    const { run_id: runId, position } = res.run;
    this.feeds.set(runId, stepFeeds(graph, this.deps.defOf));
    this.names.set(runId, graph.meta?.name ?? 'untitled');
    this.owners.set(runId, this.deps.clientId);
    const map: StatusMap = this.maps.get(runId) ?? new Map();
    if (!map.size) beginRun(map, Object.keys(graph.nodes));
    this.maps.set(runId, map);
    if (!this.queued(runId) && !this.running(runId)) {
      this.patchQueue({ pending: [...this.queue.pending, placeholder(runId, this.deps.clientId)] });
    }
    this.set({ ...this.state, gallery: [{ runId, status: 'queued', images: [] }, ...this.state.gallery.filter((g) => g.runId !== runId)] });
    // The canvas moves to the new run only when it shows nothing live: a run going on stays in view.
    const shown = this.state.active;
    if (!shown || FINISHED.has(shown.status) || shown.runId === runId) await this.show(runId, { position });
    this.refreshQueue();
    return true;
  }

  /** Cancels the run the canvas shows (the toolbar's Cancel), or the one given (the queue panel's). */
  async cancel(runId = this.state.active?.runId): Promise<void> {
    if (!runId) return;
    const status = runId === this.state.active?.runId ? this.state.active.status : this.running(runId) ? 'running' : 'queued';
    if (FINISHED.has(status)) return;
    await cancelRun(runId);
    this.refreshQueue();
  }

  async moveToFront(runId: string): Promise<void> {
    await moveRunToFront(runId);
    this.refreshQueue();
  }

  async clearQueued(): Promise<void> {
    await clearQueue();
    this.refreshQueue();
  }

  async setPaused(paused: boolean): Promise<void> {
    this.applyQueue(await setQueuePaused(paused));
  }

  /** The queue panel picked a run: the canvas shows it until it finishes (null goes back to following). */
  async select(runId: string | null): Promise<void> {
    this.set({ ...this.state, selected: runId });
    if (runId) await this.show(runId);
    else {
      const running = this.queue.running[0]?.id;
      if (running) await this.show(running);
    }
  }

  /** A new graph was opened: a finished run's badge and node states belong to the old one. */
  forgetFinished(): void {
    const a = this.state.active;
    if (!a || !FINISHED.has(a.status)) return;
    this.deps.storage?.setItem(ACTIVE_KEY, '');
    this.set({ ...this.state, active: null, selected: null });
  }

  handle(msg: ServerFrame): void {
    if (msg.type === 'snapshot') {
      for (const run of msg.runs) this.applySnapshot(run);
      return;
    }
    if (!('run_id' in msg) || !msg.run_id) return;
    const id = msg.run_id;
    const feeds = this.feeds.get(id);
    let map = this.maps.get(id);
    if (!map && !FINISHED.has(msg.type)) {
      map = new Map();
      this.maps.set(id, map);
    }
    if (map) applyRunMessage(map, msg, feeds);
    if (this.state.active?.runId === id) this.deps.status.mutate((m) => applyRunMessage(m, msg, feeds));
    this.track(msg);
    this.updateRun(msg);
  }

  /** Keeps the queue panel current between server answers; the next answer corrects positions. */
  private track(msg: Extract<ServerFrame, { run_id: string }>): void {
    const id = msg.run_id;
    if (msg.type === 'progress') {
      this.progress.set(id, { node: msg.node, step: msg.step, steps: msg.steps, t: msg.t });
      this.set({ ...this.state, queue: this.queueView() });
      return;
    }
    if (msg.type === 'queued') {
      if (!this.queued(id)) this.patchQueue({ pending: [...this.queue.pending, placeholder(id, this.owners.get(id) ?? null)] });
      this.learn(id);
      this.refreshQueue();
    } else if (msg.type === 'started') {
      const run = this.queue.pending.find((r) => r.id === id) ?? placeholder(id, this.owners.get(id) ?? null);
      this.patchQueue({
        pending: this.queue.pending.filter((r) => r.id !== id),
        running: [...this.queue.running.filter((r) => r.id !== id), { ...run, status: 'running', started_at: Date.now(), position: null }],
      });
      this.learn(id);
      // The canvas follows the run that is running now, unless a run the user picked is still live.
      const pinned = this.state.selected;
      if (!pinned || (!this.queued(pinned) && !this.running(pinned))) {
        if (pinned) this.set({ ...this.state, selected: null });
        void this.show(id);
      }
      this.refreshQueue();
    } else if (FINISHED.has(msg.type)) {
      this.progress.delete(id);
      this.patchQueue({ pending: this.queue.pending.filter((r) => r.id !== id), running: this.queue.running.filter((r) => r.id !== id) });
      if (this.state.selected === id) this.set({ ...this.state, selected: null });
      if (this.state.active?.runId !== id) this.forget(id);
      else {
        // The shown run ended: if another one is running, that is the one to watch now.
        const next = this.queue.running[0]?.id;
        if (next) void this.show(next);
      }
      this.refreshQueue();
    }
  }

  /** Drops what the page kept about a finished run it does not show. */
  private forget(id: string): void {
    for (const m of [this.maps, this.feeds, this.names, this.owners]) m.delete(id);
    this.detailsAsked.delete(id);
  }

  /** Shows run `runId` on the canvas: its node states replace what was shown (validation issues stay). */
  private async show(runId: string, extra: { position?: number } = {}): Promise<void> {
    let map = this.maps.get(runId);
    let status = this.running(runId) ? 'running' : this.queued(runId) ? 'queued' : undefined;
    if (!map || !status) {
      try {
        const run = await fetchRun(runId);
        this.learnFrom(runId, run.graph, run.client_id);
        map ??= statusesFromRun(run, this.feeds.get(runId));
        status ??= run.status;
        if (!FINISHED.has(run.status)) this.maps.set(runId, map);
      } catch {
        if (this.deps.storage?.getItem(ACTIVE_KEY) === runId) this.deps.storage.setItem(ACTIVE_KEY, '');
        return;
      }
    }
    const position = extra.position ?? this.queue.pending.findIndex((r) => r.id === runId);
    const shownMap = map;
    this.deps.status.mutate((m) => {
      const changed = new Set(m.keys());
      const issues = new Map([...m].filter(([, s]) => s.issues?.length).map(([k, s]) => [k, s.issues]));
      m.clear();
      for (const [k, s] of shownMap) m.set(k, { ...s });
      for (const [k, i] of issues) m.set(k, { ...(m.get(k) ?? {}), issues: i });
      for (const k of m.keys()) changed.add(k);
      return [...changed];
    });
    for (const [id] of this.maps) if (id !== runId && !this.queued(id) && !this.running(id)) this.forget(id);
    this.deps.storage?.setItem(ACTIVE_KEY, runId);
    this.set({ ...this.state, active: { runId, status: status ?? 'queued', ...(status === 'queued' && position >= 0 ? { position } : {}) } });
  }

  private applySnapshot(run: SnapshotRun): void {
    const id = run.id;
    this.owners.set(id, run.client_id);
    if (!FINISHED.has(run.status)) {
      const map = this.maps.get(id) ?? new Map();
      mergeSnapshot(map, run, this.feeds.get(id));
      this.maps.set(id, map);
      if (run.progress) this.progress.set(id, run.progress);
    }
    if (this.state.active?.runId === id) {
      this.deps.status.mutate((map) => mergeSnapshot(map, run, this.feeds.get(id)));
      this.set({ ...this.state, active: { runId: id, status: run.status, ...(run.position != null ? { position: run.position } : {}) } });
    }
    if (this.state.gallery.some((g) => g.runId === id)) {
      this.set({ ...this.state, gallery: mergeGallery(this.state.gallery, [galleryFromRun(run)]) });
    }
    if (!FINISHED.has(run.status)) this.learn(id);
  }

  /** Asks once for a run's graph: its name for the panel, its samplers' per-step nodes for the canvas. */
  private learn(runId: string): void {
    if (this.names.has(runId) || this.detailsAsked.has(runId)) return;
    this.detailsAsked.add(runId);
    fetchRun(runId).then(
      (run) => {
        this.learnFrom(runId, run.graph, run.client_id);
        this.set({ ...this.state, queue: this.queueView() });
      },
      () => undefined,
    );
  }

  private learnFrom(runId: string, graphValue: unknown, clientId: string | null): void {
    this.owners.set(runId, clientId);
    const graph = parseGraph(graphValue).graph;
    if (!graph) return;
    this.names.set(runId, graph.meta?.name ?? 'untitled');
    if (!this.feeds.has(runId)) this.feeds.set(runId, stepFeeds(graph, this.deps.defOf));
  }

  private queued(id: string): boolean {
    return this.queue.pending.some((r) => r.id === id);
  }

  private running(id: string): boolean {
    return this.queue.running.some((r) => r.id === id);
  }

  /** Asks the server for the queue soon; several calls in a burst make one request. */
  private refreshQueue(): void {
    if (this.refreshTimer) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      fetchQueue().then((q) => this.applyQueue(q), () => undefined);
    }, QUEUE_REFRESH_DEBOUNCE_MS);
  }

  private applyQueue(q: QueueState): void {
    this.queue = q;
    for (const r of [...q.running, ...q.pending]) {
      this.owners.set(r.id, r.client_id);
      if (r.progress && !this.progress.has(r.id)) this.progress.set(r.id, r.progress);
      this.learn(r.id);
    }
    const a = this.state.active;
    let active = a;
    if (a && !FINISHED.has(a.status)) {
      const pos = q.pending.findIndex((r) => r.id === a.runId);
      if (pos >= 0) active = { runId: a.runId, status: 'queued', position: pos };
      else if (this.running(a.runId)) active = { runId: a.runId, status: 'running' };
    }
    this.set({ ...this.state, active, queue: this.queueView() });
  }

  private patchQueue(patch: Partial<Pick<QueueState, 'running' | 'pending'>>): void {
    this.queue = { ...this.queue, ...patch };
    this.set({ ...this.state, queue: this.queueView() });
  }

  private queueView(): RunsView['queue'] {
    const entry = (r: RunSummary, i: number | null): QueueEntry => {
      const name = this.names.get(r.id);
      return {
        runId: r.id,
        status: r.status === 'running' ? 'running' : 'queued',
        position: i,
        mine: r.client_id === this.deps.clientId,
        ...(name !== undefined ? { name } : {}),
        createdAt: r.created_at,
        startedAt: r.started_at,
        progress: this.progress.get(r.id) ?? r.progress,
        cancelRequested: r.cancel_requested,
      };
    };
    return {
      paused: this.queue.paused,
      running: this.queue.running.map((r) => entry(r, null)),
      pending: this.queue.pending.map((r, i) => entry(r, i)),
    };
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
    const known = this.state.gallery.some((g) => g.runId === msg.run_id);
    const base = known || FINISHED.has(status) ? this.state.gallery : [{ runId: msg.run_id, status, images: [] }, ...this.state.gallery];
    const gallery = base.map((g) => {
      if (g.runId !== msg.run_id) return g;
      const images = msg.type === 'output'
        ? [...g.images, ...msg.images.filter((i) => !g.images.some((x) => x.url === i.url)).map((i) => ({ node: msg.node, ...i }))]
        : g.images;
      return { ...g, status, images, ...(msg.type === 'error' ? { error: msg.message } : {}) };
    });
    this.set({ ...this.state, active, gallery });
    if (FINISHED.has(status)) void this.noteWorker(msg.run_id);
    if (this.state.active?.runId !== msg.run_id) return;
    if (msg.type === 'done') this.deps.toast(`Run finished${timingText(msg.timings)}`, 'success', RUN_TOAST);
    if (msg.type === 'cancelled') this.deps.toast('Run cancelled', 'info', RUN_TOAST);
    // Its own toast key: a warning stays beside the run's status toasts instead of replacing them.
    if (msg.type === 'warning') this.deps.toast(`${msg.node}: ${msg.message}`, 'info', `warning:${msg.run_id}:${msg.node}`);
    if (msg.type === 'error') this.deps.toast(`Run failed${msg.node ? ` at ${msg.node}` : ''}: ${msg.message}`, 'error', RUN_TOAST);
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

/** A run the page heard of before the server's queue answer lists it. */
function placeholder(id: string, clientId: string | null): RunSummary {
  return {
    id, status: 'queued', client_id: clientId, created_at: Date.now(), started_at: null, finished_at: null, outputs: [], error: null,
    timings: null, node_states: {}, position: null, progress: null, cancel_requested: false,
  };
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
