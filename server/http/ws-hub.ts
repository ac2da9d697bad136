import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { originAllowed, requestHasToken, sameSecret } from './auth.js';
import { ProgressThrottle } from './progress-throttle.js';
import { rateLimitedLog } from './rate-limited-log.js';
import { fileInRoot } from './safe-name.js';
import type { RunQueue } from '../services/run-queue.js';
import type { SubmitResult, Submitter } from '../services/submit-run.js';
import type { OutputFileRef, RunEvent, RunSummary } from '../../nodes/protocol.js';
import {
  ClientIdSchema, CONTROL_FRAMES, parseClientFrame, type ClientFrame, type ServerFrame, type SnapshotRun,
} from '../../nodes/protocol.js';

export interface WsHubOptions {
  readonly queue: RunQueue;
  /** The same submission path as POST /api/runs: validation, admission, queue limits. */
  readonly submit: Submitter;
  readonly token: string | undefined;
  /** Where outputs are read from for sockets that asked for inline outputs. */
  readonly outputRoot: string;
  readonly log: (message: string, err?: unknown) => void;
  readonly progressIntervalMs?: number;
  readonly heartbeatMs?: number;
  /** Unsent bytes above which a socket's progress and preview frames are dropped. Default 4 MiB. */
  readonly backlogBytes?: number;
  /** Unsent bytes above which a socket is dropped (lifecycle frames are never skipped). Default 64 MiB. */
  readonly maxBacklogBytes?: number;
}

interface Client {
  readonly ws: WebSocket;
  readonly clientId: string | null;
  readonly runs: Set<string>;
  /** The `ref` of each run this socket submitted, echoed on that run's `queued` frames. */
  readonly refs: Map<string, string>;
  /** Runs whose `output` frames this socket wants with the files' bytes. */
  readonly inline: Set<string>;
  all: boolean;
  previews: boolean;
  alive: boolean;
  /** May submit, cancel and steer the queue: no token on the server, a token in a header, or an `auth` frame. */
  control: boolean;
  /** Set while an inline output is being read: later frames wait behind it, so the order stays the event order. */
  tail: Promise<void> | null;
  dropped: number;
  peakBuffered: number;
}

/** What the test hooks report about each socket's backlog (`GET /api/test/ws`). */
export interface SocketStats {
  readonly client_id: string | null;
  readonly buffered: number;
  readonly peak_buffered: number;
  readonly dropped: number;
}

/** Frames a socket that cannot keep up may miss without losing state: the next one or GET /api/runs/:id restores it. */
const DROPPABLE = new Set<ServerFrame['type']>(['progress', 'preview']);
const BACKLOG_BYTES = 4 * 1024 * 1024;
const MAX_BACKLOG_BYTES = 64 * 1024 * 1024;
/** A `run` frame carries a whole graph; the HTTP body limit is larger, but 1 MiB holds thousands of nodes. */
const MAX_FRAME_BYTES = 1024 * 1024;
const RECENT_RUNS_ON_CONNECT = 50;
const TERMINAL = new Set<RunEvent['type']>(['done', 'error', 'cancelled']);

/**
 * The `/ws` endpoint: per-run subscriptions instead of ComfyUI's per-client routing (A3), with a snapshot
 * on connect and on subscribe so a reconnecting client recovers state (A7.7).
 */
export class WsHub {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  private readonly clients = new Set<Client>();
  private readonly throttle: ProgressThrottle<RunEvent>;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly unsubscribe: () => void;
  /** One line per refused client frame, rate-limited: a client's mistakes are not server bugs and need no stack. */
  private readonly logRefused: (line: string) => void;

  constructor(private readonly opts: WsHubOptions) {
    this.logRefused = rateLimitedLog((line) => opts.log(line));
    this.throttle = new ProgressThrottle(opts.progressIntervalMs ?? 100, (e) => this.broadcast(e));
    this.unsubscribe = opts.queue.subscribe((event, run) => this.onRunEvent(event, run.client_id));
    this.wss.on('error', (err) => opts.log('websocket server error', err));
    this.heartbeat = setInterval(() => this.sweep(), opts.heartbeatMs ?? 30_000);
    this.heartbeat.unref();
  }

  /** For the HTTP server's 'upgrade' event; refuses with a plain HTTP status before any WebSocket exists. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/ws') return refuse(socket, 404, 'Not Found');
    const { token } = this.opts;
    if (token !== undefined && !requestHasToken(req, token, true)) return refuse(socket, 401, 'Unauthorized');
    if (!originAllowed(req, token)) return refuse(socket, 403, 'Forbidden');
    const rawClientId = url.searchParams.get('client_id');
    const clientId = rawClientId === null ? null : ClientIdSchema.safeParse(rawClientId);
    if (clientId !== null && !clientId.success) return refuse(socket, 400, 'Bad Request');
    // As on HTTP, a token in the URL only lets a socket read; changing state needs it in a header or an `auth` frame.
    const control = token === undefined || requestHasToken(req, token, false);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, clientId?.data ?? null, control));
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    this.unsubscribe();
    this.throttle.close();
    const closed = [...this.clients].map((c) => new Promise<void>((resolve) => {
      if (c.ws.readyState === c.ws.CLOSED) return resolve();
      c.ws.once('close', () => resolve());
      c.ws.close(1001, 'server shutting down');
      setTimeout(() => {
        c.ws.terminate();
        resolve();
      }, 1000).unref();
    }));
    await Promise.all(closed);
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  stats(): SocketStats[] {
    return [...this.clients].map((c) => ({
      client_id: c.clientId, buffered: c.ws.bufferedAmount, peak_buffered: c.peakBuffered, dropped: c.dropped,
    }));
  }

  private onConnection(ws: WebSocket, clientId: string | null, control: boolean): void {
    const client: Client = {
      ws, clientId, runs: new Set(), refs: new Map(), inline: new Set(), all: false, previews: true, alive: true, control,
      tail: null, dropped: 0, peakBuffered: 0,
    };
    this.clients.add(client);
    ws.on('pong', () => {
      client.alive = true;
    });
    ws.on('error', (err: Error & { code?: string }) => {
      // ws reports a client's protocol violations (bad UTF-8, oversized or malformed frames) with WS_ERR_* codes.
      if (err.code?.startsWith('WS_ERR_')) this.logRefused(`websocket frame refused (${err.code}): ${err.message}`);
      else this.opts.log('websocket error', err);
    });
    ws.on('close', () => this.clients.delete(client));
    ws.on('message', (data, isBinary) => this.onMessage(client, data, isBinary));
    // A reconnecting client gets back the runs it submitted under its client_id (A7.7).
    const runs = clientId === null ? [] : this.opts.queue.listByClient(clientId, RECENT_RUNS_ON_CONNECT);
    for (const r of runs) client.runs.add(r.id);
    this.sendSnapshot(client, runs);
  }

  private onMessage(client: Client, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.logRefused('websocket frame refused: binary');
      return this.send(client, { type: 'error', message: 'binary frames are not accepted; send JSON text' });
    }
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
    const parsed = parseClientFrame(text);
    if ('error' in parsed) {
      this.logRefused(`websocket frame refused: ${parsed.error.replaceAll('\n', ' ').slice(0, 200)}`);
      return this.send(client, { type: 'error', message: parsed.error });
    }
    this.apply(client, parsed.frame);
  }

  private apply(client: Client, frame: ClientFrame): void {
    if (CONTROL_FRAMES.has(frame.type) && !client.control) {
      return this.send(client, {
        type: 'error', ...ref(frame),
        message: `"${frame.type}" needs the token in an Authorization header or an "auth" frame, not only in the URL`,
      });
    }
    switch (frame.type) {
      case 'ping':
        return this.send(client, { type: 'pong' });
      case 'auth': {
        const { token } = this.opts;
        if (token !== undefined && !sameSecret(frame.token, token)) {
          // One guess per connection: a wrong token closes the socket (policy violation).
          this.send(client, { type: 'error', ...ref(frame), message: 'wrong token' });
          client.ws.close(1008, 'wrong token');
          return;
        }
        client.control = true;
        return this.send(client, { type: 'authorized', ...ref(frame) });
      }
      case 'run':
        void this.run(client, frame);
        return;
      case 'cancel': {
        const known = this.opts.queue.summaryOf(frame.run_id);
        if (!known) return this.send(client, { type: 'error', ...ref(frame), message: `unknown run: ${frame.run_id}` });
        // Subscribed first, so the `cancelled` frame of a queued run (sent during cancel) reaches this socket.
        client.runs.add(frame.run_id);
        const result = this.opts.queue.cancel(frame.run_id);
        if (result.outcome === 'finished') {
          this.send(client, { type: 'error', ...ref(frame), message: `run ${frame.run_id} already finished (${result.run.status})` });
        }
        return;
      }
      case 'queue': {
        const q = this.opts.queue;
        if (frame.action === 'clear') {
          const cancelled = q.clearQueued();
          return this.send(client, { type: 'queue_state', ...ref(frame), ...q.state(), cancelled });
        }
        const state = frame.action === 'pause' ? q.pause() : q.resume();
        return this.send(client, { type: 'queue_state', ...ref(frame), ...state });
      }
      case 'validate':
        // The same checks as a `run` frame's (validation and admission), so `validated` with no issues means it would be queued.
        return this.send(client, this.opts.submit.check(frame.graph).then(
          (issues) => ({ type: 'validated', ...ref(frame), issues: [...issues] }),
          (err: unknown) => ({ type: 'error', ...ref(frame), message: err instanceof Error ? err.message : String(err) }),
        ));
      case 'subscribe': {
        if (frame.previews !== undefined) client.previews = frame.previews;
        if (frame.runs === 'all') {
          client.all = true;
          return this.sendSnapshot(client, this.opts.queue.active());
        }
        const found: RunSummary[] = [];
        const unknown: string[] = [];
        // Each run once, however often a frame names it: the answer is bounded by the runs there are.
        for (const id of new Set(frame.runs)) {
          const run = this.opts.queue.summaryOf(id);
          if (run) {
            client.runs.add(id);
            found.push(run);
          } else {
            unknown.push(id);
          }
        }
        if (unknown.length) this.send(client, { type: 'error', message: `unknown run${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}` });
        return this.sendSnapshot(client, found);
      }
      case 'unsubscribe':
        if (frame.runs === 'all') {
          client.all = false;
          client.runs.clear();
        } else {
          for (const id of frame.runs) client.runs.delete(id);
        }
        return;
    }
  }

  private async run(client: Client, frame: Extract<ClientFrame, { type: 'run' }>): Promise<void> {
    let result: SubmitResult;
    try {
      result = await this.opts.submit(frame.graph, client.clientId, {
        front: frame.front === true,
        // The submitting socket follows the run from its first frame on, whatever its client_id.
        beforeEvents: (runId) => {
          client.runs.add(runId);
          if (frame.ref !== undefined) client.refs.set(runId, frame.ref);
          if (frame.inline_outputs === true) client.inline.add(runId);
        },
      });
    } catch (err) {
      // submit throws only while the server shuts down; the socket is about to close.
      return this.send(client, { type: 'error', ...ref(frame), message: err instanceof Error ? err.message : String(err) });
    }
    if (!result.ok && result.reason === 'queue_full') this.send(client, { type: 'error', ...ref(frame), message: result.message });
    else if (!result.ok) this.send(client, { type: 'invalid_graph', ...ref(frame), message: result.message, issues: [...result.issues] });
  }

  private sendSnapshot(client: Client, runs: readonly RunSummary[]): void {
    const withPreviews: SnapshotRun[] = runs.map((r) => {
      const preview = client.previews && r.status === 'running' ? this.opts.queue.livePreview(r.id) : null;
      return preview ? { ...r, preview } : r;
    });
    this.send(client, { type: 'snapshot', runs: withPreviews });
  }

  private onRunEvent(event: RunEvent, clientId: string | null): void {
    if (event.type === 'queued' && clientId !== null) {
      for (const c of this.clients) if (c.clientId === clientId) c.runs.add(event.run_id);
    }
    if (event.type === 'progress') {
      this.throttle.offer(event.run_id, event, event.step >= event.steps);
      return;
    }
    this.throttle.flush(event.run_id);
    if (event.type === 'done' || event.type === 'error' || event.type === 'cancelled') this.throttle.forget(event.run_id);
    this.broadcast(event);
  }

  private broadcast(event: RunEvent): void {
    for (const c of this.clients) {
      if (!c.all && !c.runs.has(event.run_id)) continue;
      if (event.type === 'preview' && !c.previews) continue;
      const runRef = c.refs.get(event.run_id);
      if (event.type === 'queued' && runRef !== undefined) this.send(c, { ...event, ref: runRef });
      else if (event.type === 'output' && c.inline.has(event.run_id)) this.send(c, this.inlined(event));
      else this.send(c, event);
      if (TERMINAL.has(event.type)) {
        c.refs.delete(event.run_id);
        c.inline.delete(event.run_id);
      }
    }
  }

  /** The output frame with each file's bytes; a file that cannot be read keeps only its URL (and is logged). */
  private async inlined(event: Extract<RunEvent, { type: 'output' }>): Promise<ServerFrame> {
    const withData = (files: readonly OutputFileRef[]) => Promise.all(files.map(async (f) => {
      try {
        return { ...f, data: (await readFile(await fileInRoot(this.opts.outputRoot, f.name))).toString('base64') };
      } catch (err) {
        this.opts.log(`inline output ${f.name} could not be read`, err);
        return f;
      }
    }));
    return { ...event, images: await withData(event.images), latents: await withData(event.latents) };
  }

  /** Sends in call order; a frame still being built (an inline output) holds back the frames after it. */
  private send(client: Client, frame: ServerFrame | Promise<ServerFrame>): void {
    if (client.tail === null && !(frame instanceof Promise)) return this.sendNow(client, frame);
    const tail: Promise<void> = (client.tail ?? Promise.resolve())
      .then(() => frame)
      .then((f) => this.sendNow(client, f), (err: unknown) => this.opts.log('websocket frame could not be built', err))
      .finally(() => {
        if (client.tail === tail) client.tail = null;
      });
    client.tail = tail;
  }

  private sendNow(client: Client, frame: ServerFrame): void {
    const { ws } = client;
    if (ws.readyState !== ws.OPEN) return;
    if (DROPPABLE.has(frame.type) && ws.bufferedAmount > (this.opts.backlogBytes ?? BACKLOG_BYTES)) {
      client.dropped += 1;
      return;
    }
    ws.send(JSON.stringify(frame), (err) => {
      if (err) this.opts.log('websocket send failed', err);
    });
    client.peakBuffered = Math.max(client.peakBuffered, ws.bufferedAmount);
    // Lifecycle frames are never skipped, so a reader that stopped reading is cut off instead of held in memory
    // forever; a client that reconnects gets the snapshot of its runs.
    if (ws.bufferedAmount > (this.opts.maxBacklogBytes ?? MAX_BACKLOG_BYTES)) {
      this.opts.log(`dropping a websocket ${client.clientId ?? ''} with ${ws.bufferedAmount} bytes unsent`);
      ws.terminate();
    }
  }

  /** Drops sockets that stopped answering pings (half-open TCP, sleeping laptops: ComfyUI #3128). */
  private sweep(): void {
    for (const c of this.clients) {
      if (!c.alive) {
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }
}

/** The `ref` of a client frame, to echo on its answer. */
function ref(frame: ClientFrame): { ref?: string } {
  return 'ref' in frame && frame.ref !== undefined ? { ref: frame.ref } : {};
}

function refuse(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
