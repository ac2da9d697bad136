import { withToken } from './auth.js';
import type { ServerFrame } from '../../nodes/protocol.js';
import { ServerFrameSchema } from '../../nodes/protocol.js';

export type SocketState = 'connecting' | 'open' | 'closed';

export interface RunSocketOptions {
  readonly clientId: string;
  readonly onMessage: (msg: ServerFrame) => void;
  readonly onState?: (state: SocketState) => void;
  /** Tests and dev servers can point elsewhere; the default is this page's origin. */
  readonly url?: string;
}

const MAX_BACKOFF_MS = 10_000;

/**
 * The WebSocket to `/ws`, following every run of the server (the queue panel shows them all). It reconnects with
 * backoff and re-subscribes on every open, so a server restart or a dropped connection only costs the snapshot the
 * server sends back.
 */
export class RunSocket {
  private ws: WebSocket | null = null;
  private backoff = 500;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;

  constructor(private readonly opts: RunSocketOptions) {}

  /** Connecting is separate from construction so that creating the object has no side effect. */
  open(): void {
    this.closed = false;
    if (!this.ws) this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const ws = this.ws;
    this.ws = null;
    // Closing while still connecting makes the browser log an error; let it open, then close.
    if (ws?.readyState === WebSocket.CONNECTING) ws.addEventListener('open', () => ws.close());
    else ws?.close();
  }

  private connect(): void {
    const base = this.opts.url ?? `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws`;
    const ws = new WebSocket(withToken(`${base}?client_id=${encodeURIComponent(this.opts.clientId)}`));
    this.ws = ws;
    this.opts.onState?.('connecting');
    ws.addEventListener('open', () => {
      if (this.ws !== ws) return;
      this.backoff = 500;
      ws.send(JSON.stringify({ type: 'subscribe', runs: 'all' }));
      this.opts.onState?.('open');
    });
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return;
      let msg: unknown;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      // Frames are checked against the shared protocol; one this editor does not understand is dropped, not guessed at.
      const frame = ServerFrameSchema.safeParse(msg);
      if (frame.success) this.opts.onMessage(frame.data);
      else console.warn('FuseGraph: unexpected server frame', msg);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.opts.onState?.('closed');
      if (this.closed) return;
      this.timer = setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    });
  }
}
