import { procProgress, type Progress } from './child-lifecycle.js';
import { outOfMemory } from './out-of-memory.js';
import { openChannel, type ExitCode, type SessionChannel, type SessionIsolation } from './session-channel.js';
import { uploadModels } from './upload-model.js';
import type { Feed, KeptFeed, OpenResult, Provider, WireTensor, WorkerRequest } from './wire.js';

type Pending = {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  signal: AbortSignal | undefined;
  /** The call's part ('open', 'close' for those requests) and when it was sent, to measure its time. */
  part: string;
  sent: number;
};

/**
 * Why a session worker failed the calls it had, for the client (nodes/protocol.ts RUN_ERROR_CODES): it made no
 * progress and was killed (`session_hung`), something outside the server killed it (`session_killed`), it crashed or
 * exited (`session_crashed`), or it ran out of memory (`out_of_memory`).
 */
export type SessionFailureCode = Exclude<ExitCode, null> | 'session_hung';

/**
 * Raised when the worker reports a failure; `file` names the model file when the failure was loading one, `code`
 * says how the worker ended when it did.
 */
export class SessionError extends Error {
  constructor(message: string, readonly file?: string, readonly code?: SessionFailureCode) {
    super(message);
    this.name = 'SessionError';
  }
}

/** The first SessionError code in `err` or its causes (run-error.ts gives it to the client), else null. */
export function sessionFailure(err: unknown): SessionFailureCode | null {
  const seen = new Set<unknown>();
  for (let e = err; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e instanceof SessionError && e.code) return e.code;
  }
  return null;
}

/**
 * When a session process is deemed hung: a call that gets no answer within max(floorMs, factor × the slowest call
 * of its part so far) while the process used no CPU time and had no thread running or waiting for I/O (stopped, or
 * blocked for good) is killed and fails with `session_hung`; one that still computes gets another such period.
 */
export interface HangLimits {
  readonly floorMs: number;
  readonly factor: number;
}

/**
 * The default: a minute at least, 20 times the slowest call. FUSEGRAPH_SESSION_HANG_MS (meant for tests) sets the floor
 * instead, e.g. `FUSEGRAPH_SESSION_HANG_MS=500`.
 */
export function defaultHangLimits(env: NodeJS.ProcessEnv = process.env): HangLimits {
  const floor = Number(env.FUSEGRAPH_SESSION_HANG_MS);
  return { floorMs: Number.isFinite(floor) && floor > 0 ? floor : 60_000, factor: 20 };
}

/** A call abandoned because its caller's signal was aborted (its worker is retired; see SessionHost). */
export class SessionCallAborted extends Error {
  constructor() {
    super('the call was cancelled');
    this.name = 'SessionCallAborted';
  }
}

/** One session worker and the calls waiting on it. */
interface Connection {
  readonly channel: SessionChannel;
  readonly pending: Map<number, Pending>;
  dead: Error | null;
  /** Retired on purpose (to abandon a call, or after one ran out of memory): the next call starts a fresh worker. */
  interrupted: boolean;
  /** The hang check armed while calls wait (see HangLimits), and what /proc said when it was armed. */
  watch: { timer: NodeJS.Timeout; seen: Progress | null } | null;
}

/** An input kept by the worker across calls (see SessionHost.keep). */
export class KeptInput {
  constructor(
    readonly identity: object,
    readonly make: () => WireTensor,
  ) {}
}

/** Conditionings kept per worker: a few loops' worth (positive and negative of several PredictNoise nodes). */
const MAX_KEPT = 16;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/**
 * Handle on one model's session worker (see session-worker.js and session-channel.ts). session.run() cannot be
 * interrupted in onnxruntime-node (RunOptions.terminate is only read when a run starts), so a call whose signal is
 * aborted is abandoned: its promise rejects at once and the worker is retired — a session process is killed, a
 * worker thread closes its sessions and exits once the call it is computing returns (terminating a thread inside
 * native code aborts the whole server). A worker that ends for any other reason (a crash, the OOM killer) fails the
 * calls waiting on it. Either way the next call starts a new worker that reopens the sessions.
 */
export class SessionHost {
  private conn: Connection;
  private nextId = 1;
  private keptIds = new WeakMap<object, string>();
  /** Keys the worker holds, least recently used first. */
  private readonly keptOrder: string[] = [];
  private nextKept = 1;
  /** The open request, replayed when a new worker replaces an interrupted one. */
  private openRequest: DistributiveOmit<WorkerRequest, 'id'> | null = null;
  private reopening: Promise<unknown> | null = null;
  private closed = false;
  /** Retired workers not yet exited: close() waits for them (a process that exits while a thread computes aborts). */
  private readonly ending = new Set<Promise<void>>();

  /** The slowest answered call of each part so far (ms), across this model's workers, for the hang limit. */
  private readonly slowest = new Map<string, number>();
  private readonly hang: HangLimits;

  constructor(
    private readonly isolation: SessionIsolation = 'process',
    options: { hang?: HangLimits } = {},
  ) {
    this.hang = options.hang ?? defaultHangLimits();
    this.conn = this.spawn();
  }

  private spawn(): Connection {
    const pending = new Map<number, Pending>();
    const conn: Connection = {
      pending,
      dead: null,
      interrupted: false,
      watch: null,
      channel: openChannel(this.isolation, {
        message: (res) => {
          const p = pending.get(res.id);
          if (!p) return;
          pending.delete(res.id);
          const ms = performance.now() - p.sent;
          if (ms > (this.slowest.get(p.part) ?? 0)) this.slowest.set(p.part, ms);
          // An answer is progress: the check starts over for the calls still waiting.
          this.unwatch(conn);
          if (pending.size > 0) this.watch(conn);
          if (res.ok) p.resolve(res.result);
          else {
            // After a failed allocation ONNX Runtime's arena keeps what it grew to, and the next call in that worker can
            // crash it (seen under an address-space limit): the worker is replaced, which releases it all.
            if (outOfMemory(res.error)) this.retire(conn);
            p.reject(new SessionError(res.error, res.file));
          }
        },
        exit: (why, code) => {
          this.unwatch(conn);
          conn.dead ??= new SessionError(why, undefined, code ?? undefined);
          for (const p of pending.values()) p.reject(conn.dead);
          pending.clear();
        },
      }),
    };
    return conn;
  }

  /** The live connection; after an interruption, a new worker with the sessions reopened. */
  private async connection(): Promise<Connection> {
    const gone = this.conn.interrupted || this.conn.dead || !this.conn.channel.alive;
    if (gone && !this.closed && !this.reopening && this.openRequest) {
      const conn = this.spawn();
      this.conn = conn;
      // The new worker knows no kept tensors: they are sent again with their next use.
      this.keptIds = new WeakMap();
      this.keptOrder.length = 0;
      this.reopening = this.send(conn, this.openRequest, [], undefined).finally(() => {
        this.reopening = null;
      });
    }
    if (this.reopening) await this.reopening;
    return this.conn;
  }

  private send(conn: Connection, req: DistributiveOmit<WorkerRequest, 'id'>, transfer: readonly ArrayBuffer[], signal: AbortSignal | undefined): Promise<unknown> {
    if (conn.dead) return Promise.reject(conn.dead);
    if (signal?.aborted) return Promise.reject(new SessionCallAborted());
    const id = this.nextId++;
    let onAbort: (() => void) | undefined;
    return new Promise((resolve, reject) => {
      const part = req.op === 'run' ? req.part : req.op;
      conn.pending.set(id, { resolve, reject, signal, part, sent: performance.now() });
      if (!conn.watch) this.watch(conn);
      if (signal) {
        onAbort = () => this.abandon(conn);
        signal.addEventListener('abort', onAbort, { once: true });
      }
      conn.channel.ref();
      conn.channel.post({ ...req, id } as WorkerRequest, transfer);
    }).finally(() => {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      if (conn.pending.size === 0 && !conn.interrupted) conn.channel.unref();
      if (conn.pending.size === 0 && conn.interrupted && !conn.dead) this.end(conn);
    });
  }

  /** The hang limit for the calls waiting on `conn` (see HangLimits). */
  private hangLimit(conn: Connection): number {
    let slowest = 0;
    for (const p of conn.pending.values()) slowest = Math.max(slowest, this.slowest.get(p.part) ?? 0);
    return Math.max(this.hang.floorMs, this.hang.factor * slowest);
  }

  /** Arms the hang check of a session process with calls waiting (a thread cannot be killed: it is not watched). */
  private watch(conn: Connection): void {
    const pid = conn.channel.pid;
    if (pid === undefined || conn.dead) return;
    const limit = this.hangLimit(conn);
    const seen = procProgress(pid);
    const timer = setTimeout(() => {
      conn.watch = null;
      if (conn.dead || conn.pending.size === 0) return;
      const now = procProgress(pid);
      // Ended (a zombie, or reaped) but its exit not heard yet: the exit fails the calls, saying how it ended.
      const ending = now?.ended || (now === null && seen !== null);
      // Without /proc (not Linux) nothing says it still computes: the limit alone decides.
      const computing = now !== null && seen !== null && !now.stopped && (now.active || now.ticks > seen.ticks);
      if (ending || computing) this.watch(conn);
      else this.hung(conn, limit);
    }, limit);
    timer.unref(); // the waiting calls hold the event loop (SessionChannel.ref), not the check
    conn.watch = { timer, seen };
  }

  private unwatch(conn: Connection): void {
    if (conn.watch) clearTimeout(conn.watch.timer);
    conn.watch = null;
  }

  /** Kills a session process that made no progress, failing its calls with `session_hung`; the next call gets a new one. */
  private hung(conn: Connection, limit: number): void {
    const parts = [...new Set([...conn.pending.values()].map((p) => p.part))].join(', ');
    const floor = `${Math.round(this.hang.floorMs / 1000 * 10) / 10} s`;
    conn.dead = new SessionError(
      `session process made no progress for ${Math.round(limit)} ms on a call of ${parts} (the limit is the larger of ${floor} and ` +
        `${this.hang.factor} × the slowest call of that part so far) and was killed`,
      undefined,
      'session_hung',
    );
    this.retire(conn);
    const exited = conn.channel.exited;
    this.ending.add(exited);
    void exited.then(() => this.ending.delete(exited));
    conn.channel.stop();
    for (const p of conn.pending.values()) p.reject(conn.dead);
    conn.pending.clear();
  }

  /**
   * Sends new calls to a fresh worker from now on; this one is ended (SessionChannel.stop) once the calls it is still
   * computing (other runs sharing the model) have returned.
   */
  private retire(conn: Connection): void {
    conn.interrupted = true;
  }

  /** Ends a retired worker (see SessionChannel.stop). */
  private end(conn: Connection): void {
    this.unwatch(conn);
    conn.dead = new SessionCallAborted();
    const exited = conn.channel.exited;
    this.ending.add(exited);
    void exited.then(() => this.ending.delete(exited));
    conn.channel.stop();
  }

  /**
   * Retires the worker when every call waiting on it was cancelled. A call of another run that shares this model
   * keeps the worker in service (that run's cancel then lands at its next step).
   */
  private abandon(conn: Connection): void {
    if (conn.dead || ![...conn.pending.values()].every((p) => p.signal?.aborted)) return;
    this.retire(conn);
    this.end(conn);
    for (const p of conn.pending.values()) p.reject(conn.dead!);
    conn.pending.clear();
  }

  private async call(req: DistributiveOmit<WorkerRequest, 'id'>, transfer: readonly ArrayBuffer[] = [], signal?: AbortSignal): Promise<unknown> {
    return this.send(await this.connection(), req, transfer, signal);
  }

  open(parts: Record<string, string>, providers: readonly Provider[], threads: number): Promise<OpenResult> {
    const uploads = providers.includes('webgpu') ? uploadModels() : undefined;
    this.openRequest = { op: 'open', parts, providers, threads, ...(uploads ? { uploads } : {}) };
    return this.call(this.openRequest) as Promise<OpenResult>;
  }

  /**
   * An input that stays the same across calls, identified by `identity` (whose contents must not change afterwards):
   * the tensor travels to the worker with the first call only (and again to a worker that replaced it).
   */
  keep(identity: object, make: () => WireTensor): KeptInput {
    return new KeptInput(identity, make);
  }

  /** The wire form of a kept input for the current worker: its tensor only when that worker does not hold it yet. */
  private keptFeed({ identity, make }: KeptInput): KeptFeed {
    const known = this.keptIds.get(identity);
    const at = known === undefined ? -1 : this.keptOrder.indexOf(known);
    if (known !== undefined && at >= 0) {
      this.keptOrder.splice(at, 1);
      this.keptOrder.push(known);
      return { ref: known };
    }
    const ref = `k${this.nextKept++}`;
    this.keptIds.set(identity, ref);
    this.keptOrder.push(ref);
    const drop = this.keptOrder.length > MAX_KEPT ? this.keptOrder.splice(0, this.keptOrder.length - MAX_KEPT) : [];
    return { ref, tensor: make(), ...(drop.length ? { drop } : {}) };
  }

  /**
   * One session run. `transfer` lists feed buffers the caller gives up: to a worker thread they move instead of being
   * copied (structured clone of a 128 KB latent costs more than the move; they are detached here afterwards).
   * The outputs always move back.
   */
  async run(
    part: string,
    feeds: Readonly<Record<string, WireTensor | KeptInput>>,
    fetch: readonly string[],
    transfer: readonly ArrayBuffer[] = [],
    signal?: AbortSignal,
  ): Promise<Record<string, WireTensor>> {
    const conn = await this.connection();
    // A call cancelled before it is sent sends nothing: its kept inputs must not count as sent.
    if (signal?.aborted) throw new SessionCallAborted();
    // Kept inputs take their wire form only now, for the worker that will run the call (a new one knows none).
    const wire: Record<string, Feed> = {};
    for (const [name, feed] of Object.entries(feeds)) wire[name] = feed instanceof KeptInput ? this.keptFeed(feed) : feed;
    return this.send(conn, { op: 'run', part, feeds: wire, fetch }, transfer, signal) as Promise<Record<string, WireTensor>>;
  }

  /** Closes the sessions; resolves once every worker of this model has exited (a retired thread after its call). */
  async close(): Promise<void> {
    this.closed = true;
    const conn = this.conn;
    if (!conn.dead) await this.send(conn, { op: 'close' }, [], undefined).catch(() => undefined);
    conn.dead ??= new SessionError('the model was released: its sessions are closed');
    await conn.channel.close();
    await Promise.all(this.ending);
  }
}
