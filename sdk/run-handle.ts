import type { NodeState, RunEvent, RunOutput, RunTimings, SnapshotRun } from '../nodes/protocol.js';
import { RunCancelledError, RunFailedError, type FuseGraphError, type InvalidGraphError } from './errors.js';

export type ProgressFrame = Extract<RunEvent, { type: 'progress' }>;
export type PreviewFrame = Extract<RunEvent, { type: 'preview' }>;
export type OutputFrame = Extract<RunEvent, { type: 'output' }>;

export interface RunResult {
  readonly runId: string;
  readonly outputs: readonly RunOutput[];
  readonly timings: RunTimings;
}

export interface OutputImage {
  readonly node: string;
  readonly name: string;
  readonly bytes: Uint8Array;
}

/** What a handle needs from its client: sending a cancel and fetching a file the socket did not inline. */
export interface HandleHost {
  cancel(handle: RunHandle): void;
  fetchBytes(url: string): Promise<Uint8Array>;
}

export interface RunCallbacks {
  readonly onProgress?: (frame: ProgressFrame) => void;
  readonly onPreview?: (frame: PreviewFrame) => void;
}

const TERMINAL = new Set<RunEvent['type']>(['done', 'error', 'cancelled']);

/**
 * One submitted run: its frames as an async iterator (`events`, replayed from the first frame to every
 * iterator), its result (`done`), `cancel()` and `images()`. After a dropped socket the client feeds it the
 * snapshot of its run, and the handle emits the lifecycle frames it missed, so the stream has every node,
 * output and the end.
 */
export class RunHandle {
  runId: string | null = null;
  readonly done: Promise<RunResult>;
  /** Resolves when the server queued the run (rejects like `done` when it refused it). */
  readonly accepted: Promise<{ runId: string; position: number }>;
  private readonly frames: RunEvent[] = [];
  private wake: (() => void)[] = [];
  private failure: Error | null = null;
  private finished = false;
  private resolveDone!: (r: RunResult) => void;
  private rejectDone!: (e: Error) => void;
  private resolveAccepted!: (a: { runId: string; position: number }) => void;
  private rejectAccepted!: (e: Error) => void;
  /** What this handle has seen, so a snapshot adds only what was missed. */
  private readonly nodeStates: Record<string, NodeState> = {};
  private readonly outputNames = new Set<string>();
  private readonly inline = new Map<string, string>();
  private started = false;
  cancelRequested = false;

  constructor(
    readonly ref: string,
    private readonly host: HandleHost,
    private readonly callbacks: RunCallbacks,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.accepted = new Promise((resolve, reject) => {
      this.resolveAccepted = resolve;
      this.rejectAccepted = reject;
    });
    // A caller may only iterate events, or only await `done`: neither promise may count as unhandled.
    this.done.catch(() => {});
    this.accepted.catch(() => {});
  }

  get isFinished(): boolean {
    return this.finished;
  }

  get events(): AsyncIterable<RunEvent> {
    return { [Symbol.asyncIterator]: () => this.iterate() };
  }

  /** Asks the server to cancel the run; resolves once the run has ended, however it ended. */
  async cancel(): Promise<void> {
    this.cancelRequested = true;
    this.host.cancel(this);
    await this.done.catch(() => {});
  }

  /** The run's images, from the inline bytes when the run asked for them, else fetched from their URLs. */
  async images(): Promise<OutputImage[]> {
    const { outputs } = await this.done;
    return Promise.all(outputs.filter((o) => o.kind === 'image').map(async (o) => {
      const data = this.inline.get(o.name);
      const bytes = data !== undefined ? base64ToBytes(data) : await this.host.fetchBytes(o.url);
      return { node: o.node, name: o.name, bytes };
    }));
  }

  /** A frame of this run from the server, or one the handle made up from a snapshot. */
  receive(frame: RunEvent): void {
    if (this.finished) return;
    switch (frame.type) {
      case 'queued':
        this.runId = frame.run_id;
        this.resolveAccepted({ runId: frame.run_id, position: frame.position });
        break;
      case 'started':
        this.started = true;
        break;
      case 'node_started':
        this.nodeStates[frame.node] = 'running';
        break;
      case 'node_cached':
        this.nodeStates[frame.node] = 'cached';
        break;
      case 'node_done':
        this.nodeStates[frame.node] = 'done';
        break;
      case 'output':
        for (const f of [...frame.images, ...frame.latents]) {
          this.outputNames.add(f.name);
          if (f.data !== undefined) this.inline.set(f.name, f.data);
        }
        break;
      case 'progress':
        this.callbacks.onProgress?.(frame);
        break;
      case 'preview':
        this.callbacks.onPreview?.(frame);
        break;
      default:
        break;
    }
    this.frames.push(frame);
    if (TERMINAL.has(frame.type)) this.finish(frame);
    this.notify();
  }

  /** The server refused the `run` frame. */
  refuse(err: InvalidGraphError | FuseGraphError): void {
    this.rejectAccepted(err);
    this.fail(err);
  }

  /** Ends the handle without a terminal frame (connection lost for good, client closed). */
  fail(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.failure = err;
    this.rejectAccepted(err);
    this.rejectDone(err);
    this.notify();
  }

  /**
   * Catches up from a snapshot of this run taken after a reconnect: emits, in lifecycle order, the frames the
   * dropped socket missed (start, each node's start/cached/done with its outputs, the end).
   */
  reconcile(run: SnapshotRun): void {
    if (this.finished) return;
    const run_id = run.id;
    if (this.runId === null) this.receive({ type: 'queued', run_id, position: run.position ?? 0 });
    if (run.status === 'queued') return;
    if (!this.started) this.receive({ type: 'started', run_id });
    const missedOutputs = run.outputs.filter((o) => !this.outputNames.has(o.name));
    for (const [node, state] of Object.entries(run.node_states)) {
      const seen = this.nodeStates[node];
      if (state === 'cached' && seen !== 'cached') this.receive({ type: 'node_cached', run_id, node });
      if ((state === 'running' || state === 'done') && seen === undefined) this.receive({ type: 'node_started', run_id, node });
      const mine = missedOutputs.filter((o) => o.node === node);
      if (mine.length) {
        const ref = (o: RunOutput) => ({ name: o.name, url: o.url });
        this.receive({
          type: 'output', run_id, node,
          images: mine.filter((o) => o.kind === 'image').map(ref),
          latents: mine.filter((o) => o.kind === 'latent').map(ref),
        });
      }
      if (state === 'done' && seen !== 'done') this.receive({ type: 'node_done', run_id, node, ms: run.timings?.nodes[node] ?? 0 });
    }
    if (run.status === 'running' && run.progress) this.receive({ type: 'progress', run_id, ...run.progress });
    const timings = run.timings ?? { queue_ms: null, run_ms: null, nodes: {} };
    if (run.status === 'done') this.receive({ type: 'done', run_id, outputs: run.outputs, timings });
    if (run.status === 'cancelled') this.receive({ type: 'cancelled', run_id });
    if (run.status === 'error') {
      const e = run.error ?? { node: null, message: 'the run failed' };
      this.receive({
        type: 'error', run_id, node: e.node, message: e.message,
        ...(e.field !== undefined ? { field: e.field } : {}),
        ...(e.node_type !== undefined ? { node_type: e.node_type } : {}),
      });
    }
  }

  private finish(frame: RunEvent): void {
    this.finished = true;
    if (frame.type === 'done') {
      this.resolveDone({ runId: frame.run_id, outputs: frame.outputs, timings: frame.timings });
    } else if (frame.type === 'error') {
      this.rejectDone(new RunFailedError(frame.run_id, frame.node, frame.message, frame.field, frame.node_type, frame.code));
    } else {
      this.rejectDone(new RunCancelledError(frame.run_id));
    }
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = [];
    for (const w of wake) w();
  }

  private async *iterate(): AsyncGenerator<RunEvent> {
    let i = 0;
    for (;;) {
      while (i < this.frames.length) yield this.frames[i++]!;
      if (this.finished) {
        if (this.failure) throw this.failure;
        return;
      }
      await new Promise<void>((resolve) => this.wake.push(resolve));
    }
  }
}

function base64ToBytes(data: string): Uint8Array {
  const binary = atob(data);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
