import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { originAllowed, requestHasToken } from './auth.js';
import { ProgressThrottle } from './progress-throttle.js';
import { rateLimitedLog } from './rate-limited-log.js';
import type { RunQueue } from '../services/run-queue.js';
import type { RunEvent, RunSummary } from '../../nodes/protocol.js';
import { ClientIdSchema, parseClientFrame, type ClientFrame, type ServerFrame, type SnapshotRun } from '../../nodes/protocol.js';

export interface WsHubOptions {
  readonly queue: RunQueue;
  readonly token: string | undefined;
  readonly log: (message: string, err?: unknown) => void;
  readonly progressIntervalMs?: number;
  readonly heartbeatMs?: number;
}

interface Client {
  readonly ws: WebSocket;
  readonly clientId: string | null;
  readonly runs: Set<string>;
  all: boolean;
  previews: boolean;
  alive: boolean;
}

/** Frames a socket that cannot keep up may miss without losing state: the next one or GET /api/runs/:id restores it. */
const DROPPABLE = new Set<ServerFrame['type']>(['progress', 'preview']);
const BACKLOG_BYTES = 4 * 1024 * 1024;
const MAX_FRAME_BYTES = 64 * 1024;
const RECENT_RUNS_ON_CONNECT = 50;

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
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, clientId?.data ?? null));
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

  private onConnection(ws: WebSocket, clientId: string | null): void {
    const client: Client = { ws, clientId, runs: new Set(), all: false, previews: true, alive: true };
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
    switch (frame.type) {
      case 'ping':
        return this.send(client, { type: 'pong' });
      case 'subscribe': {
        if (frame.previews !== undefined) client.previews = frame.previews;
        if (frame.runs === 'all') {
          client.all = true;
          return this.sendSnapshot(client, this.opts.queue.active());
        }
        const found: RunSummary[] = [];
        const unknown: string[] = [];
        for (const id of frame.runs) {
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
      this.send(c, event);
    }
  }

  private send(client: Client, frame: ServerFrame): void {
    const { ws } = client;
    if (ws.readyState !== ws.OPEN) return;
    if (DROPPABLE.has(frame.type) && ws.bufferedAmount > BACKLOG_BYTES) return;
    ws.send(JSON.stringify(frame), (err) => {
      if (err) this.opts.log('websocket send failed', err);
    });
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

function refuse(socket: Duplex, status: number, reason: string): void {
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
