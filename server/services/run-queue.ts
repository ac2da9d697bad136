import { randomUUID } from 'node:crypto';
import type { Graph } from '../../nodes/graph-format.js';
import { RunCancelledError } from '../engine/errors.js';
import type { RunPlan } from '../engine/plan.js';
import type { ExecutionEvent, RunResult } from '../engine/events.js';
import { LiveRun, toRunOutput } from './live-run.js';
import { toRunError } from './run-error.js';
import type { RunStore, StoredRunMeta } from './run-store.js';
import type { QueueState, RunDetail, RunEvent, RunOutput, RunSummary, RunTimings } from '../../nodes/protocol.js';

export type RunEventListener = (event: RunEvent, run: { readonly client_id: string | null }) => void;

/**
 * How the queue runs one graph; start.ts binds it to executeGraph with the shared models and cache. `graph` is the
 * graph as submitted (and stored); `plan` is the plan submission made of it, absent for a run whose plan this process
 * did not make (re-queued by a restart), which must then be prepared again.
 */
export type ExecuteFn = (
  graph: Graph,
  ctx: {
    plan: RunPlan | undefined;
    runId: string;
    signal: AbortSignal;
    onEvent: (e: ExecutionEvent) => void;
    /** Whether the signal's abort is a user's cancel (not a shutdown): a remote backend must pass that on. */
    cancelRequested: () => boolean;
    /** Scale-out: a worker took the run; recorded for the run's summary. */
    onWorker: (name: string) => void;
  },
) => Promise<RunResult>;

export interface RunQueueOptions {
  readonly store: RunStore;
  readonly execute: ExecuteFn;
  readonly concurrency: number;
  /** Runs that may execute at once, asked at every dispatch (scale-out: the live workers' slots); default `concurrency`. */
  readonly capacity?: () => number;
  /** A run that was running when the server stopped this many times is failed instead of retried (crash loops). */
  readonly maxAttempts?: number;
  readonly log: (message: string, err?: unknown) => void;
  /** Makes server paths in error messages relative before they reach clients. */
  readonly redact: (text: string) => string;
  /** Deletes an output file (by name, in the output root) that no run refers to any more. */
  readonly removeOutput: (name: string) => Promise<void>;
  /** Queued plus running runs one client_id may have (runs without one share a count). Default 100. */
  readonly maxActivePerClient?: number;
  /** Retention: finished runs beyond the newest `keepRuns`, or finished more than `keepDays` ago, are deleted with their output files. */
  readonly keepRuns?: number;
  readonly keepDays?: number;
}

/** The client already has as many runs queued or running as the server allows. */
export class QueueLimitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueueLimitError';
  }
}

export interface SubmitOptions {
  /** Queue ahead of every queued run (ComfyUI's "queue front"). */
  readonly front?: boolean;
  /** Called with the new run's id before any of its events, so a transport can subscribe its submitter first. */
  readonly beforeEvents?: (runId: string) => void;
}

export type CancelOutcome =
  | { readonly outcome: 'cancelled' | 'cancelling' | 'finished'; readonly run: RunSummary }
  | { readonly outcome: 'not_found' };

const PAUSED_KEY = 'queue.paused';

/**
 * FIFO of runs backed by the store, executed `concurrency` at a time. It owns run state transitions and
 * turns engine events into run events; transports (HTTP, WebSocket) only read and subscribe.
 */
export class RunQueue {
  private readonly live = new Map<string, LiveRun>();
  /** The plans of runs submitted by this process and not started yet (a restart re-prepares from the stored graph). */
  private readonly plans = new Map<string, RunPlan>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly listeners = new Set<RunEventListener>();
  private paused: boolean;
  private closing = false;

  constructor(private readonly opts: RunQueueOptions) {
    this.paused = opts.store.getSetting(PAUSED_KEY) === 'true';
  }

  /** Puts runs a previous process left running back in the queue (from scratch), then starts work. */
  start(): { requeued: string[]; failed: string[] } {
    const requeued: string[] = [];
    const failed: string[] = [];
    const maxAttempts = this.opts.maxAttempts ?? 3;
    for (const run of this.opts.store.withStatus('running')) {
      if (run.cancel_requested) {
        // Cancelled while it ran, then the server died before the run noticed: it ends cancelled, never re-runs.
        this.opts.store.markFinished(run.id, { status: 'cancelled', finished_at: Date.now(), node_states: run.node_states });
      } else if (run.attempts >= maxAttempts) {
        this.opts.store.markFinished(run.id, {
          status: 'error',
          finished_at: Date.now(),
          error: { node: null, message: `the server stopped while running this run ${run.attempts} times; not retrying it` },
        });
        failed.push(run.id);
      } else {
        this.requeue(run.id, run.outputs);
        requeued.push(run.id);
      }
    }
    this.retain().catch((err: unknown) => this.opts.log('retention failed', err));
    this.pump();
    return { requeued, failed };
  }

  subscribe(listener: RunEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Queues a prepared run (submit-run.ts) at the back, or ahead of every queued run with `front` (ComfyUI's "queue
   * front"). The graph as submitted is what the store keeps and GET /api/runs/:id shows; the plan is what runs.
   */
  submit(plan: RunPlan, clientId: string | null, opts: SubmitOptions = {}): { run_id: string; position: number } {
    if (this.closing) throw new Error('the server is shutting down');
    const max = this.opts.maxActivePerClient ?? 100;
    if (this.opts.store.activeCount(clientId) >= max) {
      throw new QueueLimitError(
        `${clientId === null ? 'runs without a client_id' : `client "${clientId}"`}: ${max} run${max === 1 ? '' : 's'} already queued or running, ` +
          "the server's limit per client; wait for some to finish or cancel them",
      );
    }
    const id = randomUUID();
    this.opts.store.insert({ id, graph: plan.submitted, client_id: clientId, created_at: Date.now() });
    this.plans.set(id, plan);
    opts.beforeEvents?.(id);
    if (opts.front && this.opts.store.moveToFront(id)) this.emitPositions(id);
    const position = this.opts.store.position(id) ?? 0;
    this.emit({ type: 'queued', run_id: id, position }, clientId);
    this.pump();
    return { run_id: id, position };
  }

  /** Moves a queued run ahead of every other queued run. */
  moveToFront(id: string): { outcome: 'moved'; run: RunSummary } | { outcome: 'not_found' } | { outcome: 'not_queued'; run: RunSummary } {
    const run = this.summaryOf(id);
    if (!run) return { outcome: 'not_found' };
    if (!this.opts.store.moveToFront(id)) return { outcome: 'not_queued', run };
    this.emitPositions();
    return { outcome: 'moved', run: this.summaryOf(id)! };
  }

  /** Cancels every queued run (running ones go on); returns their ids. */
  clearQueued(): string[] {
    const ids = this.opts.store.queuedIds();
    for (const id of ids) this.cancel(id);
    return ids;
  }

  /** After a reorder every queued run's position may have changed: each gets a fresh `queued` frame. */
  private emitPositions(except?: string): void {
    // withStatus lists queued runs in queue order, so a run's index is its position (one query, not one per run).
    this.opts.store.withStatus('queued').forEach((run, position) => {
      if (run.id !== except) this.emit({ type: 'queued', run_id: run.id, position }, run.client_id);
    });
  }

  cancel(id: string): CancelOutcome {
    const live = this.live.get(id);
    if (live) {
      this.opts.store.markCancelRequested(id);
      live.cancelRequested = true;
      live.controller.abort();
      return { outcome: 'cancelling', run: this.summaryOf(id)! };
    }
    const run = this.opts.store.getMeta(id);
    if (!run) return { outcome: 'not_found' };
    if (run.status !== 'queued') return { outcome: 'finished', run: this.summarize([run])[0]! };
    this.plans.delete(id);
    if (this.opts.store.markFinished(id, { status: 'cancelled', finished_at: Date.now() })) {
      this.emit({ type: 'cancelled', run_id: id }, run.client_id);
    }
    return { outcome: 'cancelled', run: this.summaryOf(id)! };
  }

  pause(): QueueState {
    this.paused = true;
    this.opts.store.setSetting(PAUSED_KEY, 'true');
    return this.state();
  }

  resume(): QueueState {
    this.paused = false;
    this.opts.store.setSetting(PAUSED_KEY, 'false');
    this.pump();
    return this.state();
  }

  /** Dispatches queued runs now: a backend calls it when its capacity grew (a worker joined). */
  wake(): void {
    this.pump();
  }

  state(): QueueState {
    return {
      paused: this.paused,
      concurrency: this.opts.concurrency,
      running: this.summarize(this.opts.store.withStatus('running')),
      pending: this.summarize(this.opts.store.withStatus('queued')),
    };
  }

  summaryOf(id: string): RunSummary | undefined {
    const run = this.opts.store.getMeta(id);
    return run ? this.summarize([run])[0] : undefined;
  }

  detail(id: string): RunDetail | undefined {
    const run = this.opts.store.get(id);
    const summary = run ? this.summarize([run])[0] : undefined;
    return run && summary ? { ...summary, graph: run.graph } : undefined;
  }

  list(limit: number, before?: string): RunSummary[] {
    return this.summarize(this.opts.store.list(limit, before));
  }

  listByClient(clientId: string, limit: number): RunSummary[] {
    return this.summarize(this.opts.store.listByClient(clientId, limit));
  }

  /** Queued and running runs, oldest first. */
  active(): RunSummary[] {
    return this.summarize([...this.opts.store.withStatus('running'), ...this.opts.store.withStatus('queued')]);
  }

  livePreview(id: string): LiveRun['preview'] {
    return this.live.get(id)?.preview ?? null;
  }

  /**
   * Stops taking work and aborts running runs; they stay queued in the store, so the next start re-runs
   * them. Waits up to `graceMs` for the engine to notice the abort.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.closing = true;
    for (const live of this.live.values()) live.controller.abort();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs);
    });
    await Promise.race([Promise.allSettled([...this.inFlight]), grace]);
    clearTimeout(timer);
    this.listeners.clear();
  }

  /**
   * Back to the queue, from scratch: the files its interrupted attempt wrote are removed (unless another run lists
   * them, as a cached output node does), so the retry leaves no orphan and takes the same numbers again.
   */
  private requeue(id: string, outputs: readonly RunOutput[]): void {
    const names = this.opts.store.unreferenced(outputs.map((o) => o.name), [id]);
    this.opts.store.requeue(id);
    void this.removeFiles(names);
  }

  private async removeFiles(names: readonly string[]): Promise<void> {
    await Promise.all(names.map((name) => this.opts.removeOutput(name).catch((err: unknown) => this.opts.log(`could not remove output ${name}`, err))));
  }

  /**
   * Applies --keep-runs / --keep-days: deletes expired finished runs, then the files no remaining run lists. A run's
   * terminal event waits for it, so a client that hears `done` sees history and output folder already trimmed.
   */
  private async retain(): Promise<void> {
    const { keepRuns, keepDays, store } = this.opts;
    if (keepRuns === undefined && keepDays === undefined) return;
    const olderThan = keepDays === undefined ? undefined : Date.now() - keepDays * 86_400_000;
    for (;;) {
      const expired = store.expired(keepRuns, olderThan, 500);
      if (!expired.length) return;
      store.delete(expired.map((r) => r.id));
      await this.removeFiles(store.unreferenced(expired.flatMap((r) => r.outputs.map((o) => o.name)), []));
    }
  }

  private summarize(runs: readonly StoredRunMeta[]): RunSummary[] {
    const queued = new Map(this.opts.store.queuedIds().map((id, i) => [id, i]));
    return runs.map((run) => {
      const live = this.live.get(run.id);
      return {
        id: run.id,
        status: run.status,
        client_id: run.client_id,
        created_at: run.created_at,
        started_at: run.started_at,
        finished_at: run.finished_at,
        position: queued.get(run.id) ?? null,
        outputs: live ? [...live.outputs] : run.outputs,
        error: run.error,
        timings: run.timings,
        progress: live?.progress ?? null,
        node_states: live ? { ...live.nodeStates } : run.node_states,
        cancel_requested: live?.cancelRequested ?? false,
        worker: run.worker,
      };
    });
  }

  private emit(event: RunEvent, clientId: string | null): void {
    for (const listener of this.listeners) {
      try {
        listener(event, { client_id: clientId });
      } catch (err) {
        this.opts.log('a run event listener failed', err);
      }
    }
  }

  private pump(): void {
    while (!this.paused && !this.closing && this.live.size < (this.opts.capacity?.() ?? this.opts.concurrency)) {
      const next = this.opts.store.nextQueued();
      if (!next) return;
      const startedAt = Date.now();
      this.opts.store.markStarted(next.id, startedAt);
      const live = new LiveRun(next.id, next.client_id, next.created_at, startedAt);
      this.live.set(next.id, live);
      this.emit({ type: 'started', run_id: next.id }, next.client_id);
      const plan = this.plans.get(next.id);
      this.plans.delete(next.id);
      const p: Promise<void> = this.execute(next.graph, plan, live)
        .catch((err: unknown) => this.opts.log(`run ${next.id} could not be recorded`, err))
        .finally(() => {
          this.inFlight.delete(p);
          this.live.delete(next.id);
          this.pump();
        });
      this.inFlight.add(p);
    }
  }

  private async execute(graph: Graph, plan: RunPlan | undefined, live: LiveRun): Promise<void> {
    const { store } = this.opts;
    let result: RunResult;
    try {
      result = await this.opts.execute(graph, {
        plan,
        runId: live.id,
        cancelRequested: () => live.cancelRequested,
        onWorker: (name) => store.setWorker(live.id, name),
        signal: live.controller.signal,
        onEvent: (e) => this.onEngineEvent(live, e),
      });
    } catch (err) {
      await this.fail(live, err);
      return;
    }
    const outputs = result.outputs.map(toRunOutput);
    const timings: RunTimings = {
      queue_ms: live.startedAt - live.createdAt,
      run_ms: Date.now() - live.startedAt,
      nodes: result.timings,
    };
    const recorded = store.markFinished(live.id, {
      status: 'done', finished_at: Date.now(), outputs, timings, node_states: live.nodeStates,
    });
    if (!recorded) return;
    await this.retain();
    this.emit({ type: 'done', run_id: live.id, outputs, timings }, live.clientId);
  }

  private async fail(live: LiveRun, err: unknown): Promise<void> {
    const { store } = this.opts;
    const aborted = live.controller.signal.aborted;
    if (this.closing && aborted && !live.cancelRequested) {
      this.requeue(live.id, live.outputs);
      return;
    }
    if (aborted || err instanceof RunCancelledError) {
      live.settleRunning('cancelled');
      const finished_at = Date.now();
      const timings: RunTimings = { queue_ms: live.startedAt - live.createdAt, run_ms: finished_at - live.startedAt, nodes: {} };
      if (store.markFinished(live.id, { status: 'cancelled', finished_at, outputs: live.outputs, timings, node_states: live.nodeStates })) {
        await this.retain();
        this.emit({ type: 'cancelled', run_id: live.id }, live.clientId);
      }
      return;
    }
    const error = toRunError(err, this.opts.redact);
    // The full exception (stack, absolute paths) goes to the server log only; the client gets toRunError's view.
    if (error.node === null) this.opts.log(`run ${live.id} failed outside any node`, err);
    else if (err instanceof Error && err.cause !== undefined) this.opts.log(`run ${live.id} failed at node "${error.node}"`, err.cause);
    if (error.node !== null) live.nodeStates[error.node] = 'error';
    live.settleRunning('error');
    const finished_at = Date.now();
    const timings: RunTimings = { queue_ms: live.startedAt - live.createdAt, run_ms: finished_at - live.startedAt, nodes: {} };
    if (store.markFinished(live.id, { status: 'error', finished_at, outputs: live.outputs, error, timings, node_states: live.nodeStates })) {
      await this.retain();
      this.emit(
        {
          type: 'error', run_id: live.id, node: error.node, message: error.message,
          ...(error.node_type !== undefined ? { node_type: error.node_type } : {}),
          ...(error.field !== undefined ? { field: error.field } : {}),
          ...(error.code !== undefined ? { code: error.code } : {}),
        },
        live.clientId,
      );
    }
  }

  private onEngineEvent(live: LiveRun, e: ExecutionEvent): void {
    const run_id = live.id;
    switch (e.type) {
      case 'node_started':
        live.nodeStates[e.node] = 'running';
        this.emit({ type: 'node_started', run_id, node: e.node }, live.clientId);
        return;
      case 'node_cached':
        live.nodeStates[e.node] = 'cached';
        this.emit({ type: 'node_cached', run_id, node: e.node }, live.clientId);
        return;
      case 'warning':
        this.emit({ type: 'warning', run_id, node: e.node, message: e.message }, live.clientId);
        return;
      case 'progress':
        live.progress = { node: e.node, step: e.step, steps: e.steps, t: e.t };
        this.emit({ type: 'progress', run_id, node: e.node, step: e.step, steps: e.steps, t: e.t }, live.clientId);
        return;
      case 'preview': {
        const image = `data:image/png;base64,${e.png.toString('base64')}`;
        live.preview = { node: e.node, step: e.step, steps: e.steps, image };
        this.emit({ type: 'preview', run_id, node: e.node, step: e.step, steps: e.steps, image }, live.clientId);
        return;
      }
      case 'node_done':
        live.nodeStates[e.node] = 'done';
        this.emit({ type: 'node_done', run_id, node: e.node, ms: e.ms }, live.clientId);
        return;
      case 'output': {
        const outputs = e.files.map(toRunOutput);
        live.outputs.push(...outputs);
        this.opts.store.recordOutputs(live.id, live.outputs);
        const ref = (o: (typeof outputs)[number]) => ({ name: o.name, url: o.url });
        this.emit({
          type: 'output', run_id, node: e.node,
          images: outputs.filter((o) => o.kind === 'image').map(ref),
          latents: outputs.filter((o) => o.kind === 'latent').map(ref),
        }, live.clientId);
        return;
      }
    }
  }
}
