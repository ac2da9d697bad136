import { spawn, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { cp, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import WebSocket from 'ws';
import type { Graph } from '../../nodes/graph-format.js';
import { startServer, type RunningServer, type ServerOptions } from '../../server/http/start.js';
import { REPO_ROOT, txt2imgGraph } from '../helpers/graphs.js';
import { ErrorBodySchema, ServerFrameSchema } from '../../nodes/protocol.js';
import { tinyWorkspace } from '../helpers/tiny-models.js';
import { childProcesses, rssMiB } from '../../tools/proc.js';

export const TINY_MODEL = 'tiny';

/** A temp folder with a tiny real ONNX model under models/tiny and empty input/output/data folders. */
export interface Sandbox {
  readonly root: string;
  readonly modelsRoot: string;
  readonly inputRoot: string;
  readonly outputRoot: string;
  readonly dataDir: string;
  remove(): Promise<void>;
}

export async function makeSandbox(): Promise<Sandbox> {
  const ws = await tinyWorkspace({ [TINY_MODEL]: {} });
  await mkdir(ws.input, { recursive: true });
  return {
    root: ws.root,
    modelsRoot: ws.models,
    inputRoot: ws.input,
    outputRoot: ws.output,
    dataDir: path.join(ws.root, 'data'),
    remove: ws.cleanup,
  };
}

export const quiet = (): void => {};

/**
 * A sandbox and a server started before one describe block's tests and closed and removed after them; `use` hands
 * both to the suite once they are up.
 */
export function serverPerSuite(use: (s: { sandbox: Sandbox; server: RunningServer }) => void, extra: Partial<ServerOptions> = {}): void {
  let sandbox: Sandbox | undefined;
  let server: RunningServer | undefined;
  before(async () => {
    sandbox = await makeSandbox();
    server = await startIn(sandbox, extra);
    use({ sandbox, server });
  });
  after(async () => {
    await server?.close();
    await sandbox?.remove();
  });
}

export function startIn(s: Sandbox, extra: Partial<ServerOptions> = {}): Promise<RunningServer> {
  return startServer({
    port: 0,
    modelsRoot: s.modelsRoot,
    inputRoot: s.inputRoot,
    outputRoot: s.outputRoot,
    dataDir: s.dataDir,
    graphsDir: path.join(s.root, 'graphs'),
    clientDir: path.join(s.root, 'client'),
    previewEvery: 2,
    log: quiet,
    testHooks: true,
    ...extra,
  });
}

/**
 * `fusegraph serve` as a separate process on the sandbox (so a test can kill it with SIGKILL), with test hooks,
 * on a free port. Resolves with its URL once it listens. `dataLimit` caps the process's private memory (RLIMIT_DATA,
 * through the shell's `ulimit -d`), so an allocation beyond it fails instead of waking the OOM killer. `env` adds to
 * its environment.
 */
export async function serveProcess(
  s: Sandbox,
  o: { args?: readonly string[]; modelsRoot?: string; dataLimit?: number; env?: Readonly<Record<string, string>> } = {},
): Promise<{ url: string; child: ChildProcess; exited: Promise<unknown> }> {
  const argv = [
    process.execPath, path.join(REPO_ROOT, 'bin', 'fusegraph.js'), 'serve', '--port', '0', '--test-hooks',
    '--models', o.modelsRoot ?? s.modelsRoot, '--input', s.inputRoot, '--out', s.outputRoot, '--data', s.dataDir, ...(o.args ?? []),
  ];
  const [command, ...args] = o.dataLimit === undefined
    ? argv
    : ['/bin/sh', '-c', `ulimit -d ${Math.ceil(o.dataLimit / 1024)} && exec "$@"`, 'sh', ...argv];
  const child = spawn(command!, args, { env: { ...process.env, FUSEGRAPH_NO_WEBGPU: '1', ...o.env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += String(d);
      const m = /API on (http:\/\/\S+)/.exec(err);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`server exited (${String(code)}): ${err}`)));
  });
  return { url, child, exited };
}

/**
 * The session processes (server/runtime/session-channel.ts) of the process `pid`, by their command line: one per
 * loaded model. Linux only (reads /proc).
 */
export async function sessionProcesses(pid: number): Promise<number[]> {
  return (await childProcesses(pid)).filter((c) => c.cmdline.includes('session-worker.js')).map((c) => c.pid);
}

export { rssMiB };

/**
 * Resolves once process `pid` has exited (polled: it may be no child of this process, so no event says it). With
 * `reaped`, only once its parent has also collected its exit status (for a server in this process: its exit handler ran).
 */
export async function processGone(pid: number, timeoutMs = 10_000, o: { reaped?: boolean } = {}): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // A zombie still has a /proc entry: its state is Z until its parent reaps it.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
    if (stat === null || (!o.reaped && / [ZX] /.test(stat.slice(stat.lastIndexOf(')') + 1, stat.lastIndexOf(')') + 4)))) return;
    if (Date.now() > deadline) throw new Error(`process ${pid} still runs after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A copy of the sandbox's tiny model under `name` whose UNet file is not ONNX: admission (which reads the folder's
 * metadata, not its weights) lets a run naming it through, and its LoadModel fails at run time.
 */
export async function brokenModel(s: Sandbox, name: string): Promise<string> {
  const dir = path.join(s.modelsRoot, name);
  await cp(path.join(s.modelsRoot, TINY_MODEL), dir, { recursive: true });
  await writeFile(path.join(dir, 'unet', 'model.onnx'), 'not an ONNX model');
  return name;
}

/** The shared small txt2img graph (64×64, 4 steps by default) on the sandbox's tiny model, or on `model`. */
export function txt2img(o: { steps?: number; seed?: number; size?: number; model?: string; prompt?: string } = {}): Graph {
  return txt2imgGraph(o.model ?? TINY_MODEL, o);
}

export interface GateState {
  readonly held: boolean;
  readonly allowance: number | null;
  readonly passed: number;
  readonly ignoreCancel: boolean;
  readonly waiting: readonly { node: string; step: number; steps: number }[];
}

/**
 * Drives the server's test-only step gate: `{ hold: true }` holds every sampler step from now on,
 * `{ release_steps: n }` lets n through, `{ hold: false }` opens it; `{ ignore_cancel: true }` keeps held steps held
 * when their run is cancelled.
 */
export async function gate(base: string, body: { hold?: boolean; release_steps?: number; ignore_cancel?: boolean }): Promise<GateState> {
  const res = await api<GateState>(base, '/api/test/gate', { body });
  if (res.status !== 200) throw new Error(`gate ${JSON.stringify(body)}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

/** Resolves once at least `waiting` sampler steps are held at the gate (and `passed` have passed). */
export async function gateWait(base: string, want: { waiting?: number; passed?: number; timeout_ms?: number }): Promise<GateState> {
  const res = await api<GateState>(base, '/api/test/gate/wait', { body: want });
  if (res.status !== 200) throw new Error(`gate wait ${JSON.stringify(want)}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export interface JsonResponse<T = Record<string, unknown>> {
  readonly status: number;
  readonly headers: Headers;
  readonly body: T;
}

/** fetch with a JSON body in and out; non-JSON answers come back as { text }. */
export async function api<T = Record<string, unknown>>(
  base: string,
  route: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string>; raw?: string | Buffer } = {},
): Promise<JsonResponse<T>> {
  const headers: Record<string, string> = { ...init.headers };
  let body: string | Uint8Array | undefined = init.raw === undefined || typeof init.raw === 'string' ? init.raw : new Uint8Array(init.raw);
  if (init.body !== undefined) {
    body = JSON.stringify(init.body);
    headers['content-type'] ??= 'application/json';
  }
  const res = await fetch(base + route, { method: init.method ?? (body === undefined ? 'GET' : 'POST'), headers, body: body as BodyInit | undefined });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = { text };
  }
  // Every API error answers with the shared error body (nodes/protocol.ts).
  if (route.startsWith('/api') && res.status >= 400) {
    const checked = ErrorBodySchema.safeParse(parsed);
    if (!checked.success) throw new Error(`${route} answered ${res.status} outside the protocol: ${text.slice(0, 200)}`);
  }
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export type Frame = { type: string; run_id?: string; [key: string]: unknown };

/** A WebSocket client that records every frame, so tests can wait for one and then look at the order. */
export class WsClient {
  readonly frames: Frame[] = [];
  /** Frames that do not match the shared protocol (nodes/protocol.ts); close() fails the test when there are any. */
  readonly violations: string[] = [];
  private waiters: { predicate: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      const checked = ServerFrameSchema.safeParse(frame);
      if (!checked.success) this.violations.push(`${JSON.stringify(frame).slice(0, 200)}: ${checked.error.message}`);
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => {
        if (!w.predicate(frame)) return true;
        w.resolve(frame);
        return false;
      });
    });
  }

  static connect(base: string, query = '', headers: Record<string, string> = {}): Promise<WsClient> {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws${query}`, { headers });
    const client = new WsClient(ws);
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(client));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
  }

  /** The first recorded or future frame matching the predicate. */
  waitFor(predicate: (f: Frame) => boolean, timeoutMs = 30_000, what = 'frame'): Promise<Frame> {
    const seen = this.frames.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; got ${this.frames.map((f) => f.type).join(', ')}`)), timeoutMs);
      this.waiters.push({ predicate, resolve: (f) => {
        clearTimeout(timer);
        resolve(f);
      } });
    });
  }

  /** Waits for a frame that arrives after now (ignoring those already recorded). */
  next(predicate: (f: Frame) => boolean, timeoutMs = 30_000, what = 'frame'): Promise<Frame> {
    const from = this.frames.length;
    return this.waitFor((f) => this.frames.indexOf(f) >= from && predicate(f), timeoutMs, what);
  }

  send(value: unknown): void {
    this.ws.send(typeof value === 'string' ? value : JSON.stringify(value));
  }

  forRun(runId: string): Frame[] {
    return this.frames.filter((f) => f.run_id === runId);
  }

  async close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) {
      await new Promise<void>((resolve) => {
        this.ws.once('close', () => resolve());
        this.ws.close();
      });
    }
    if (this.violations.length) throw new Error(`frames outside the protocol:\n${this.violations.join('\n')}`);
  }
}

export const isTerminal = (runId: string) => (f: Frame): boolean =>
  f.run_id === runId && (f.type === 'done' || f.type === 'error' || f.type === 'cancelled');
