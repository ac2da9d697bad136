import type { NodeDef } from '../nodes/define.js';
import type { GraphIssue } from '../nodes/graph-format.js';
import {
  ErrorBodySchema, ServerFrameSchema, type ClientFrame, type QueueState, type ServerFrame, type SnapshotRun,
} from '../nodes/protocol.js';
import { FuseGraphError, InvalidGraphError } from './errors.js';
import { RunHandle, type HandleHost, type RunCallbacks } from './run-handle.js';
import { openSocket, OPEN, type SocketLike } from './transport.js';

export interface ConnectOptions {
  /** The server's token (`fusegraph serve --token`). */
  readonly token?: string;
  /** Names this client's runs on the server, so a reconnect gets their snapshot back. Default: a random id. */
  readonly clientId?: string;
  /** Whether `preview` frames are wanted (default true). */
  readonly previews?: boolean;
  /** Reconnection after a dropped socket; `false` fails the open runs instead. */
  readonly reconnect?: false | { readonly retries?: number; readonly minDelayMs?: number; readonly maxDelayMs?: number };
  readonly onConnectionChange?: (state: 'connected' | 'reconnecting' | 'closed') => void;
}

export interface RunOptions extends RunCallbacks {
  /** Aborting cancels the run. */
  readonly signal?: AbortSignal;
  /** Queue ahead of every queued run. */
  readonly front?: boolean;
  /** Have `output` frames carry the files' bytes, so `images()` needs no HTTP request. */
  readonly inlineOutputs?: boolean;
}

/** An entry of GET /api/models; loaded models add provider, sizes and dtypes. */
export type ModelInfo = { readonly path: string; readonly loaded?: boolean; readonly error?: string } & Readonly<Record<string, unknown>>;

type Answer = Extract<ServerFrame, { type: 'validated' | 'queue_state' | 'authorized' }>;
type ClientFrameOut = ClientFrame & { ref?: string };

interface PendingRequest {
  readonly text: string;
  readonly resolve: (frame: Answer) => void;
  readonly reject: (err: Error) => void;
  /** The socket it went out on; a reconnect repeats it when that socket dropped before the answer. */
  sentOn?: SocketLike;
}

/** A `run` frame, tracked until its `queued` or `invalid_graph` answer. */
interface RunSend {
  readonly ref: string;
  readonly handle: RunHandle;
}

interface Outgoing {
  readonly text: string;
  readonly run?: RunSend;
  readonly request?: PendingRequest;
}

/**
 * A FuseGraph server over one WebSocket: submit runs and follow them (`run`), cancel, steer the queue and
 * validate graphs. A dropped socket is reopened with the same client id; the server's snapshot then brings every
 * open run up to date (see RunHandle.reconcile), and frames the old socket may have lost are sent again.
 */
export class FuseGraphClient implements HandleHost {
  readonly httpBase: string;
  readonly clientId: string;
  /** How many times the socket was reopened after dropping. */
  reconnects = 0;
  private readonly wsUrl: string;
  private socket: SocketLike | null = null;
  /** Frames waiting for an open socket. */
  private outbox: Outgoing[] = [];
  private readonly handles = new Map<string, RunHandle>();
  private readonly byRun = new Map<string, RunHandle>();
  /** `run` frames that went out on a socket that dropped before the server's `queued` answer came back. */
  private readonly unacked = new Map<string, { handle: RunHandle; text: string }>();
  private readonly requests = new Map<string, PendingRequest>();
  private readonly knownRuns = new Set<string>();
  private awaitingConnectSnapshot = false;
  private nextRef = 0;
  private closed = false;
  private closedPromise: Promise<void> | null = null;

  private constructor(url: string, private readonly options: ConnectOptions) {
    const u = new URL(url);
    const secure = u.protocol === 'https:' || u.protocol === 'wss:';
    this.httpBase = `${secure ? 'https' : 'http'}://${u.host}`;
    this.clientId = options.clientId ?? `sdk-${Math.random().toString(36).slice(2, 12)}`;
    this.wsUrl = `${secure ? 'wss' : 'ws'}://${u.host}/ws?client_id=${encodeURIComponent(this.clientId)}`;
  }

  static async connect(url: string, options: ConnectOptions = {}): Promise<FuseGraphClient> {
    const client = new FuseGraphClient(url, options);
    await client.open();
    return client;
  }

  /** Validates and queues a graph (any format version the server reads). */
  run(graph: unknown, options: RunOptions = {}): RunHandle {
    const ref = this.ref();
    const handle = new RunHandle(ref, this, options);
    this.handles.set(ref, handle);
    const text = JSON.stringify({
      type: 'run', graph, ref,
      ...(options.front ? { front: true } : {}),
      ...(options.inlineOutputs ? { inline_outputs: true } : {}),
    } satisfies ClientFrameOut);
    if (this.closed) handle.fail(new FuseGraphError('the client is closed'));
    else this.sendText({ text, run: { ref, handle } });
    const { signal } = options;
    if (signal) {
      if (signal.aborted) void handle.cancel();
      else signal.addEventListener('abort', () => void handle.cancel(), { once: true });
    }
    return handle;
  }

  /** Every issue the server finds in the graph, each naming its node and field; empty when it would run. */
  async validate(graph: unknown): Promise<GraphIssue[]> {
    const answer = await this.request({ type: 'validate', graph });
    return answer.type === 'validated' ? answer.issues : [];
  }

  pause(): Promise<QueueState> {
    return this.queueAction('pause');
  }

  resume(): Promise<QueueState> {
    return this.queueAction('resume');
  }

  /** Cancels every queued run; running runs go on. */
  clearQueue(): Promise<QueueState & { cancelled?: string[] }> {
    return this.queueAction('clear');
  }

  async nodes(): Promise<NodeDef[]> {
    return ((await this.getJson('/api/nodes')) as { nodes: NodeDef[] }).nodes;
  }

  async models(): Promise<ModelInfo[]> {
    return ((await this.getJson('/api/models')) as { models: ModelInfo[] }).models;
  }

  async fetchBytes(url: string): Promise<Uint8Array> {
    const res = await fetch(new URL(url, this.httpBase), { headers: this.authHeaders() });
    if (!res.ok) throw await httpError(res);
    return new Uint8Array(await res.arrayBuffer());
  }

  cancel(handle: RunHandle): void {
    if (handle.runId === null || handle.isFinished) return; // sent once the run is queued (see onFrame)
    this.send({ type: 'cancel', run_id: handle.runId, ref: this.ref() });
  }

  /** Closes the socket; runs still open fail with a FuseGraphError (they go on on the server). */
  close(): Promise<void> {
    if (this.closedPromise) return this.closedPromise;
    this.closed = true;
    this.failAll(new FuseGraphError('the client was closed'));
    const socket = this.socket;
    this.closedPromise = new Promise<void>((resolve) => {
      if (!socket || socket.readyState > OPEN) return resolve();
      socket.addEventListener('close', () => resolve());
      socket.close(1000, 'client closed');
    });
    this.options.onConnectionChange?.('closed');
    return this.closedPromise;
  }

  private async open(reconnecting = false): Promise<void> {
    // The connect snapshot may arrive before openSocket returns; it is handled (and adopts lost answers) then.
    this.awaitingConnectSnapshot = true;
    const { socket, needsAuth } = await openSocket(this.wsUrl, this.options.token, (data) => this.onMessage(data));
    this.socket = socket;
    socket.addEventListener('close', () => void this.onClose(socket));
    if (needsAuth) socket.send(JSON.stringify({ type: 'auth', token: this.options.token!, ref: this.ref() } satisfies ClientFrameOut));
    if (this.options.previews === false) socket.send(JSON.stringify({ type: 'subscribe', runs: [], previews: false } satisfies ClientFrameOut));
    const outbox = this.outbox;
    this.outbox = [];
    for (const out of outbox) this.sendText(out);
    if (reconnecting) this.reconnects += 1;
    this.options.onConnectionChange?.('connected');
  }

  private async onClose(socket: SocketLike): Promise<void> {
    if (socket !== this.socket || this.closed) return;
    this.socket = null;
    const policy = this.options.reconnect;
    if (policy === false) {
      this.failAll(new FuseGraphError('the connection to the server was lost'));
      return;
    }
    this.options.onConnectionChange?.('reconnecting');
    const retries = policy?.retries ?? 20;
    let delay = policy?.minDelayMs ?? 100;
    for (let attempt = 0; attempt < retries && !this.closed; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, policy?.maxDelayMs ?? 5000);
      if (this.closed) return;
      try {
        await this.open(true);
        return;
      } catch {
        // try again after a longer wait
      }
    }
    if (!this.closed) this.failAll(new FuseGraphError(`the connection to the server was lost and ${retries} reconnects failed`));
  }

  private onMessage(data: unknown): void {
    let value: unknown;
    try {
      value = JSON.parse(typeof data === 'string' ? data : String(data));
    } catch {
      return;
    }
    const parsed = ServerFrameSchema.safeParse(value);
    // A newer server may send frames this client does not know; they are not for it.
    if (parsed.success) this.onFrame(parsed.data);
  }

  private onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'snapshot':
        return this.onSnapshot(frame.runs);
      case 'queued': {
        const handle = frame.ref !== undefined ? this.handles.get(frame.ref) : undefined;
        if (handle && !this.byRun.has(frame.run_id)) {
          this.unacked.delete(handle.ref);
          this.byRun.set(frame.run_id, handle);
          this.knownRuns.add(frame.run_id);
          handle.receive(frame);
          if (handle.cancelRequested) this.cancel(handle);
          return;
        }
        break;
      }
      case 'invalid_graph':
        if (frame.ref !== undefined) this.refuseRun(frame.ref, new InvalidGraphError(frame.message, frame.issues));
        return;
      case 'validated':
      case 'queue_state':
      case 'authorized':
        return this.answer(frame.ref, (r) => r.resolve(frame));
      case 'pong':
        return;
      case 'error': {
        if (frame.run_id !== undefined) break; // a run failed: its handle gets the frame
        const { ref, message } = frame;
        if (ref === undefined) return;
        this.answer(ref, (r) => r.reject(new FuseGraphError(message)));
        this.refuseRun(ref, new FuseGraphError(message)); // e.g. a socket without the right to submit
        return;
      }
      default:
        break;
    }
    if ('run_id' in frame && frame.run_id !== undefined) this.dispatch(frame.run_id, (h) => h.receive(frame));
  }

  private onSnapshot(runs: readonly SnapshotRun[]): void {
    if (this.awaitingConnectSnapshot) {
      this.awaitingConnectSnapshot = false;
      this.adoptLostAcks(runs);
    }
    for (const run of runs) {
      this.knownRuns.add(run.id);
      this.dispatch(run.id, (h) => h.reconcile(run));
    }
  }

  /**
   * After a reconnect: a `run` whose answer was lost either reached the server (its run is in the snapshot under
   * this client id, new to this client) or did not (it is sent again). New runs are matched in submission order.
   */
  private adoptLostAcks(runs: readonly SnapshotRun[]): void {
    const fresh = runs.filter((r) => !this.knownRuns.has(r.id)).sort((a, b) => a.created_at - b.created_at);
    for (const [ref, { handle, text }] of [...this.unacked]) {
      this.unacked.delete(ref);
      const run = fresh.shift();
      if (run) {
        this.byRun.set(run.id, handle);
        handle.reconcile(run);
      } else {
        this.sendText({ text, run: { ref, handle } });
      }
    }
    // Requests and cancels whose answers the old socket lost are repeated; each is safe to repeat.
    for (const r of this.requests.values()) {
      if (r.sentOn !== undefined && r.sentOn !== this.socket) this.sendText({ text: r.text, request: r });
    }
    for (const handle of this.byRun.values()) {
      if (handle.cancelRequested) this.cancel(handle);
    }
    // Runs beyond the server's per-client snapshot (its latest 50) are followed explicitly.
    const inSnapshot = new Set(runs.map((r) => r.id));
    const missing = [...this.byRun.keys()].filter((id) => !inSnapshot.has(id));
    if (missing.length) this.send({ type: 'subscribe', runs: missing });
  }

  private dispatch(runId: string, f: (h: RunHandle) => void): void {
    const handle = this.byRun.get(runId);
    if (!handle) return;
    f(handle);
    if (handle.isFinished) {
      this.byRun.delete(runId);
      this.handles.delete(handle.ref);
    }
  }

  private answer(ref: string | undefined, f: (r: PendingRequest) => void): void {
    const r = ref !== undefined ? this.requests.get(ref) : undefined;
    if (!r || ref === undefined) return;
    this.requests.delete(ref);
    f(r);
  }

  private queueAction(action: 'pause' | 'resume' | 'clear'): Promise<QueueState & { cancelled?: string[] }> {
    return this.request({ type: 'queue', action }).then((a) => a as Extract<Answer, { type: 'queue_state' }>);
  }

  private request(frame: ClientFrameOut): Promise<Answer> {
    if (this.closed) return Promise.reject(new FuseGraphError('the client is closed'));
    const ref = this.ref();
    const text = JSON.stringify({ ...frame, ref });
    return new Promise<Answer>((resolve, reject) => {
      const request: PendingRequest = { text, resolve, reject };
      this.requests.set(ref, request);
      this.sendText({ text, request });
    });
  }

  private send(frame: ClientFrameOut): void {
    this.sendText({ text: JSON.stringify(frame) });
  }

  /** Sends now or, while reconnecting, once the new socket is open; remembers what each frame's answer is for. */
  private sendText(out: Outgoing): void {
    const socket = this.socket;
    if (socket === null || socket.readyState !== OPEN) {
      this.outbox.push(out);
      return;
    }
    if (out.run) this.unacked.set(out.run.ref, { handle: out.run.handle, text: out.text });
    if (out.request) out.request.sentOn = socket;
    socket.send(out.text);
  }

  private refuseRun(ref: string, err: InvalidGraphError | FuseGraphError): void {
    const handle = this.handles.get(ref);
    if (!handle) return;
    this.unacked.delete(ref);
    this.handles.delete(ref);
    handle.refuse(err);
  }

  private failAll(err: Error): void {
    for (const handle of this.handles.values()) handle.fail(err);
    for (const r of this.requests.values()) r.reject(err);
    this.handles.clear();
    this.byRun.clear();
    this.unacked.clear();
    this.requests.clear();
  }

  private ref(): string {
    this.nextRef += 1;
    return `r${this.nextRef}`;
  }

  private authHeaders(): Record<string, string> {
    return this.options.token === undefined ? {} : { authorization: `Bearer ${this.options.token}` };
  }

  private async getJson(route: string): Promise<unknown> {
    const res = await fetch(this.httpBase + route, { headers: this.authHeaders() });
    if (!res.ok) throw await httpError(res);
    return res.json();
  }
}

/** Opens a client: `const client = await connect('http://127.0.0.1:8188', { token })`. */
export function connect(url: string, options: ConnectOptions = {}): Promise<FuseGraphClient> {
  return FuseGraphClient.connect(url, options);
}

async function httpError(res: Response): Promise<FuseGraphError> {
  const body = ErrorBodySchema.safeParse(await res.json().catch(() => null));
  return new FuseGraphError(body.success ? `${res.status} ${body.data.error}: ${body.data.message}` : `HTTP ${res.status}`);
}
