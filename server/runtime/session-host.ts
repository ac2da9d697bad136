import { Worker } from 'node:worker_threads';
import { outOfMemory } from './out-of-memory.js';
import { uploadModels } from './upload-model.js';
import type { Feed, KeptFeed, OpenResult, Provider, WireTensor, WorkerRequest, WorkerResponse } from './wire.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void; signal: AbortSignal | undefined };

/** Raised when the worker reports a failure; `file` names the model file when the failure was loading one. */
export class SessionError extends Error {
  constructor(message: string, readonly file?: string) {
    super(message);
    this.name = 'SessionError';
  }
}

/** A call abandoned because its caller's signal was aborted (its worker is retired; see SessionHost). */
export class SessionCallAborted extends Error {
  constructor() {
    super('the call was cancelled');
    this.name = 'SessionCallAborted';
  }
}

/** One worker thread and the calls waiting on it. */
interface Connection {
  readonly worker: Worker;
  readonly pending: Map<number, Pending>;
  dead: Error | null;
  /** Retired on purpose (to abandon a call, or after one ran out of memory): the next call starts a fresh worker. */
  interrupted: boolean;
}

/**
 * One lock for every session worker of the process (see `exclusive` in session-worker.js): onnxruntime-node runs all
 * WebGPU sessions of a process on one WebGPU context, which is not thread-safe, so the workers take turns on it.
 * 0 = free, else the threadId of the worker holding it.
 */
const gpuLock = new Int32Array(new SharedArrayBuffer(4));

/** Conditionings kept per worker: a few loops' worth (positive and negative of several PredictNoise nodes). */
const MAX_KEPT = 16;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Request id of the close message sent to a retired worker. */
const RETIRE_ID = 0;

/**
 * Main-thread handle on one session worker (see session-worker.js). session.run() cannot be interrupted in
 * onnxruntime-node (RunOptions.terminate is only read when a run starts), and terminating a worker while a run is
 * inside native code aborts the whole process when the run returns. So a call whose signal is aborted is
 * abandoned: its promise rejects at once, the worker is retired (it closes its sessions and exits once the call
 * it is computing returns), and the next call starts a new worker that reopens the sessions.
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

  constructor() {
    this.conn = this.spawn();
  }

  private spawn(): Connection {
    const worker = new Worker(new URL('./session-worker.js', import.meta.url), { workerData: { gpuLock } });
    const conn: Connection = { worker, pending: new Map(), dead: null, interrupted: false };
    const threadId = worker.threadId;
    worker.unref();
    worker.on('message', (res: WorkerResponse) => {
      if (res.id === RETIRE_ID) {
        void worker.terminate();
        return;
      }
      const p = conn.pending.get(res.id);
      if (!p) return;
      conn.pending.delete(res.id);
      if (res.ok) p.resolve(res.result);
      else {
        // After a failed allocation ONNX Runtime's arena keeps what it grew to, and the next call in that worker can
        // crash the process (seen under an address-space limit): the worker is replaced, which releases it all.
        if (outOfMemory(res.error)) this.retire(conn);
        p.reject(new SessionError(res.error, res.file));
      }
    });
    const fail = (err: Error): void => {
      conn.dead ??= err;
      for (const p of conn.pending.values()) p.reject(conn.dead);
      conn.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      // A worker that ends while holding the WebGPU lock (terminated mid-call) must not block the others forever.
      if (Atomics.compareExchange(gpuLock, 0, threadId, 0) === threadId) Atomics.notify(gpuLock, 0);
      fail(new SessionError(`session worker exited (code ${code})`));
    });
    return conn;
  }

  /** The live connection; after an interruption, a new worker with the sessions reopened. */
  private async connection(): Promise<Connection> {
    if (this.conn.interrupted && !this.reopening && this.openRequest) {
      const conn = this.spawn();
      this.conn = conn;
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
      conn.pending.set(id, { resolve, reject, signal });
      if (signal) {
        onAbort = () => this.abandon(conn);
        signal.addEventListener('abort', onAbort, { once: true });
      }
      conn.worker.ref();
      conn.worker.postMessage({ ...req, id } as WorkerRequest, transfer);
    }).finally(() => {
      if (onAbort) signal?.removeEventListener('abort', onAbort);
      // A retired worker stays referenced until it exits: a process that exited while it is still inside
      // session.run() would abort.
      if (conn.pending.size === 0 && !conn.interrupted) conn.worker.unref();
      if (conn.pending.size === 0 && conn.interrupted && !conn.dead) this.end(conn);
    });
  }

  /**
   * Sends new calls to a fresh worker from now on; this one closes its sessions and exits once the calls it is still
   * computing (other runs sharing the model) have returned.
   */
  private retire(conn: Connection): void {
    if (conn.interrupted) return;
    conn.interrupted = true;
    this.keptIds = new WeakMap();
    this.keptOrder.length = 0;
    conn.worker.ref();
  }

  /** Ends a retired worker: handled after the call in progress returns; its answer terminates the worker. */
  private end(conn: Connection): void {
    conn.dead = new SessionCallAborted();
    conn.worker.postMessage({ op: 'close', id: RETIRE_ID } as WorkerRequest);
  }

  /**
   * Retires the worker when every call waiting on it was cancelled. A call of another run that shares this model
   * keeps the worker in service (that run's cancel then lands at its next step).
   */
  private abandon(conn: Connection): void {
    if (conn.dead || ![...conn.pending.values()].every((p) => p.signal?.aborted)) return;
    // The new worker knows no kept tensors: they are sent again with their next use.
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
   * A feed for an input that stays the same across calls, identified by `identity` (whose contents must not change
   * afterwards): the tensor travels to the worker with the first call only.
   */
  keep(identity: object, make: () => WireTensor): KeptFeed {
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
   * One session run. `transfer` lists feed buffers the caller gives up: they move to the worker instead of being
   * copied (structured clone of a 128 KB latent costs more than the move; they are detached here afterwards).
   * The outputs always move back.
   */
  run(
    part: string,
    feeds: Record<string, Feed>,
    fetch: readonly string[],
    transfer: readonly ArrayBuffer[] = [],
    signal?: AbortSignal,
  ): Promise<Record<string, WireTensor>> {
    return this.call({ op: 'run', part, feeds, fetch }, transfer, signal) as Promise<Record<string, WireTensor>>;
  }

  async close(): Promise<void> {
    // A retired worker still computing ends on its own once its call returns.
    const conn = this.conn;
    if (!conn.dead) await this.send(conn, { op: 'close' }, [], undefined).catch(() => undefined);
    await conn.worker.terminate();
  }
}
