import { Worker } from 'node:worker_threads';
import { uploadModels } from './upload-model.js';
import type { Feed, KeptFeed, OpenResult, Provider, WireTensor, WorkerRequest, WorkerResponse } from './wire.js';

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/** Raised when the worker reports a failure; `file` names the model file when the failure was loading one. */
export class SessionError extends Error {
  constructor(message: string, readonly file?: string) {
    super(message);
    this.name = 'SessionError';
  }
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

/** Main-thread handle on one session worker (see session-worker.js). */
export class SessionHost {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead: Error | null = null;
  private readonly keptIds = new WeakMap<object, string>();
  /** Keys the worker holds, least recently used first. */
  private readonly keptOrder: string[] = [];
  private nextKept = 1;

  constructor() {
    this.worker = new Worker(new URL('./session-worker.js', import.meta.url), { workerData: { gpuLock } });
    const threadId = this.worker.threadId;
    this.worker.unref();
    this.worker.on('message', (res: WorkerResponse) => {
      const p = this.pending.get(res.id);
      if (!p) return;
      this.pending.delete(res.id);
      if (res.ok) p.resolve(res.result);
      else p.reject(new SessionError(res.error, res.file));
    });
    const fail = (err: Error): void => {
      this.dead = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => {
      // A worker that ends while holding the WebGPU lock (terminated mid-call) must not block the others forever.
      if (Atomics.compareExchange(gpuLock, 0, threadId, 0) === threadId) Atomics.notify(gpuLock, 0);
      fail(new SessionError(`session worker exited (code ${code})`));
    });
  }

  private call(req: DistributiveOmit<WorkerRequest, 'id'>, transfer: readonly ArrayBuffer[] = []): Promise<unknown> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      this.worker.postMessage({ ...req, id } as WorkerRequest, transfer);
    }).finally(() => {
      if (this.pending.size === 0) this.worker.unref();
    });
  }

  open(parts: Record<string, string>, providers: readonly Provider[], threads: number): Promise<OpenResult> {
    const uploads = providers.includes('webgpu') ? uploadModels() : undefined;
    return this.call({ op: 'open', parts, providers, threads, ...(uploads ? { uploads } : {}) }) as Promise<OpenResult>;
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
  run(part: string, feeds: Record<string, Feed>, fetch: readonly string[], transfer: readonly ArrayBuffer[] = []): Promise<Record<string, WireTensor>> {
    return this.call({ op: 'run', part, feeds, fetch }, transfer) as Promise<Record<string, WireTensor>>;
  }

  async close(): Promise<void> {
    if (!this.dead) await this.call({ op: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }
}
