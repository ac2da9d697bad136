import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Graph, GraphIssue } from '../../../nodes/graph-format.js';
import { GraphValidationError, ReportedRunError, RunCancelledError } from '../../engine/errors.js';
import type { RunPlan } from '../../engine/plan.js';
import { validateGraph } from '../../engine/validate.js';
import type { ExecutionEvent, OutputFile, RunResult } from '../../engine/events.js';
import type { ExecuteFn } from '../run-queue.js';
import type { WorkerInfo } from '../../../nodes/protocol.js';
import { OutputStore } from './output-store.js';
import { BULL_PREFIX, checkReachable, connectRedis, FINISHED_TTL_S, KEYS, redisTarget } from './redis.js';
import { readWorkers } from './registry.js';
import { modelsOf, routeOf, routingIssues } from './routing.js';
import { appendEntry, decodeEntry, type StreamEntry } from './stream.js';

export interface RedisBackendOptions {
  readonly url: string;
  /** `--redis-ca`: a PEM file of the CA to trust for a `rediss://` Redis, besides Node's own. */
  readonly ca?: string;
  readonly outputRoot: string;
  readonly previewEvery: number;
  readonly log: (message: string, err?: unknown) => void;
  /** How often the workers' heartbeats are read for routing and capacity. Default 500 ms. */
  readonly refreshMs?: number;
}

/** What a job carries to a worker. */
export interface RunJobData {
  readonly graph: Graph;
  readonly previewEvery: number;
}

/** A merged entry of GET /api/models in scale-out mode: a folder, which workers serve it, and whether one has it loaded. */
export interface SharedModelListing {
  readonly path: string;
  /** An ONNX folder, a checkpoint file or a standalone VAE file, as in a local listing. */
  readonly kind: string;
  readonly bytes: number;
  readonly parts: readonly string[];
  readonly sha256: Readonly<Record<string, string>>;
  readonly workers: readonly string[];
  readonly loaded: boolean;
  /** Set when workers serve different files under this path (their model.onnx hashes differ). */
  readonly conflict?: string;
}

const BLOCK_MS = 1000;

type Route = ReturnType<typeof routeOf>;

/**
 * The API node's side of scale-out: validated runs go to BullMQ (one queue per set of model folders, see
 * routing.ts) instead of executing here, and each run's events come back from the Redis stream its worker
 * writes. It is an ExecuteFn, so the RunQueue, SQLite history and WebSocket hub work exactly as in local mode.
 */
export class RedisBackend {
  private readonly queues = new Map<string, Queue>();
  private readonly followers = new Set<Redis>();
  private readonly files: OutputStore;
  private workerList: WorkerInfo[] = [];
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Called when the workers' total capacity grew, so the run queue dispatches waiting runs. */
  onCapacity: () => void = () => {};
  /** Called with each run queue (model set) as it becomes known, so a dashboard can list it. */
  onQueue: (queue: Queue) => void = () => {};

  private constructor(private readonly opts: RedisBackendOptions, readonly redis: Redis) {
    this.files = new OutputStore(redis, opts.outputRoot);
  }

  static async connect(opts: RedisBackendOptions): Promise<RedisBackend> {
    const redis = connectRedis(redisTarget(opts.url, opts.ca), 'api');
    try {
      await checkReachable(redis, opts.url);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    const backend = new RedisBackend(opts, redis);
    for (const id of Object.keys(await redis.hgetall(KEYS.routes))) backend.queueFor(`runs-${id}`);
    await backend.refresh();
    backend.timer = setInterval(() => void backend.refresh(), opts.refreshMs ?? 500);
    backend.timer.unref();
    return backend;
  }

  /** Runs that may execute at once: every live worker's slots. */
  capacity(): number {
    return this.workerList.reduce((sum, w) => sum + w.concurrency, 0);
  }

  /** The run queues known so far: those of earlier runs (read from Redis at connect) and of runs since. */
  runQueues(): Queue[] {
    return [...this.queues.values()];
  }

  /** Live workers, read now (GET /api/workers). */
  async workers(): Promise<WorkerInfo[]> {
    this.workerList = await readWorkers(this.redis);
    return this.workerList;
  }

  /** Submit-time check: issues when no live worker serves all of the run's model folders. */
  routingIssues(plan: RunPlan): GraphIssue[] {
    return routingIssues(plan, this.workerList);
  }

  async listModels(): Promise<SharedModelListing[]> {
    const byPath = new Map<string, { kind: string; bytes: number; sha256: Record<string, string>; workers: string[]; loaded: boolean; conflict?: string }>();
    for (const w of await this.workers()) {
      for (const m of w.models) {
        let entry = byPath.get(m.path);
        if (!entry) {
          entry = { kind: m.kind ?? 'folder', bytes: m.bytes, sha256: { ...m.sha256 }, workers: [], loaded: false };
          byPath.set(m.path, entry);
        } else if (JSON.stringify(entry.sha256) !== JSON.stringify(m.sha256)) {
          entry.conflict = `workers serve different files under "${m.path}" (model.onnx SHA-256 differ); runs may differ by worker`;
        }
        entry.workers.push(w.name);
        if (w.resident.includes(m.path)) entry.loaded = true;
      }
    }
    return [...byPath.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([path, e]) => ({ path, kind: e.kind, bytes: e.bytes, parts: Object.keys(e.sha256), sha256: e.sha256, workers: e.workers, loaded: e.loaded, ...(e.conflict ? { conflict: e.conflict } : {}) }));
  }

  readonly execute: ExecuteFn = async (graph, ctx) => {
    // The job carries the graph as submitted: the worker validates, plans and admits it against its own folders.
    let plan = ctx.plan;
    if (!plan) {
      // Re-queued by a restart: its plan (only the route needs it here) is made again from the stored graph.
      const validated = validateGraph(graph);
      if (!validated.plan) throw new GraphValidationError(validated.issues);
      plan = validated.plan;
    }
    const route = routeOf(modelsOf(plan).map((m) => m.path));
    await this.redis.hset(KEYS.routes, route.id, JSON.stringify(route.paths));
    const queue = this.queueFor(route.queue);
    const data: RunJobData = { graph, previewEvery: this.opts.previewEvery };
    // The run id is the job id: adding it again (an API node restarted mid-run) finds the job already there.
    await queue.add('run', data, {
      jobId: ctx.runId,
      removeOnComplete: { age: FINISHED_TTL_S },
      removeOnFail: { age: FINISHED_TTL_S },
    });
    // Workers fetch by hand (worker.ts): this tells those that serve the route to look now.
    await this.redis.publish(KEYS.queued, route.id);
    return this.follow(ctx, queue, data, route);
  };

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    for (const f of this.followers) f.disconnect();
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    this.redis.disconnect();
  }

  private async refresh(): Promise<void> {
    if (this.closed) return;
    const before = this.capacity();
    try {
      this.workerList = await readWorkers(this.redis);
    } catch (err) {
      this.opts.log('could not read the workers from Redis', err);
      return;
    }
    if (this.capacity() > before) this.onCapacity();
  }

  private queueFor(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.redis, prefix: BULL_PREFIX });
      queue.on('error', (err) => this.opts.log(`queue ${name}`, err));
      this.queues.set(name, queue);
      this.onQueue(queue);
    }
    return queue;
  }

  /** Follows one run's event stream from its start (a restarted API node replays it) until its last entry. */
  private async follow(ctx: Parameters<ExecuteFn>[1], queue: Queue, data: RunJobData, route: Route): Promise<RunResult> {
    const conn = this.redis.duplicate();
    conn.on('error', () => {});
    this.followers.add(conn);
    const run = new RemoteRun(ctx.runId, ctx.onEvent, ctx.onWorker, this.files);
    let detached = false;
    const onAbort = (): void => {
      if (ctx.cancelRequested()) {
        this.cancel(ctx.runId, queue).catch((err: unknown) => this.opts.log(`could not cancel run ${ctx.runId}`, err));
      } else {
        // A shutdown, not a cancel: the worker goes on, and the next API node start follows the run again.
        detached = true;
        conn.disconnect();
      }
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      let last = '0';
      for (;;) {
        if (detached || this.closed) throw new RunCancelledError();
        let reply: [Buffer, [Buffer, Buffer[]][]][] | null;
        try {
          reply = (await conn.xreadBuffer('BLOCK', BLOCK_MS, 'STREAMS', KEYS.events(ctx.runId), last)) as typeof reply;
        } catch (err) {
          if (detached || this.closed) throw new RunCancelledError();
          throw err;
        }
        if (!reply) {
          await this.checkJob(ctx.runId, queue, data, run, route);
          continue;
        }
        for (const [, entries] of reply) {
          for (const [id, fields] of entries) {
            last = id.toString();
            const { entry, bytes } = decodeEntry(fields);
            const result = await run.apply(entry, bytes).catch(async (err: unknown) => {
              await this.forget(ctx.runId);
              throw err;
            });
            if (result) {
              await this.forget(ctx.runId);
              return result;
            }
          }
        }
      }
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      this.followers.delete(conn);
      conn.disconnect();
    }
  }

  /**
   * The run's result is read: its stream goes at once (at scale the streams' files are most of Redis's memory).
   * Should this node die before recording the result, the next start finds a finished job without a stream and
   * runs it again (checkJob).
   */
  private async forget(runId: string): Promise<void> {
    await this.redis.del(KEYS.events(runId), KEYS.runFiles(runId)).catch((err: unknown) => this.opts.log(`could not delete run ${runId}'s stream`, err));
  }

  /**
   * While a stream is quiet: a job BullMQ gave up on (its workers died too often) fails the run; a job that
   * finished without a stream to read (see forget) or that Redis lost (restarted without persistence) is
   * submitted again, so the run starts over instead of waiting forever.
   */
  private async checkJob(runId: string, queue: Queue, data: RunJobData, run: RemoteRun, route: Route): Promise<void> {
    const state = await queue.getJobState(runId);
    if (state === 'failed') {
      const job = await queue.getJob(runId);
      throw new Error(`the run's job failed in BullMQ: ${job?.failedReason ?? 'no reason given'}`);
    }
    const lost = state === 'unknown' || state === 'completed';
    if (lost && !run.started && (await this.redis.exists(KEYS.events(runId))) === 0) {
      this.opts.log(`run ${runId} has no job or events in Redis any more; submitting it again`);
      await (await queue.getJob(runId))?.remove();
      // Announced again: a Redis restarted without persistence lost the routes too.
      await this.redis.hset(KEYS.routes, route.id, JSON.stringify(route.paths));
      await queue.add('run', data, { jobId: runId, removeOnComplete: { age: FINISHED_TTL_S }, removeOnFail: { age: FINISHED_TTL_S } });
      await this.redis.publish(KEYS.queued, route.id);
    }
  }

  /** Durable: a worker that takes the run later (a retry, a race with this cancel) finds the mark and stops at once. */
  private async cancel(runId: string, queue: Queue): Promise<void> {
    await this.redis.set(KEYS.cancelled(runId), '1', 'EX', 24 * 3600);
    await this.redis.publish(KEYS.cancelChannel, runId);
    // A run no worker has taken is taken out of its queue here; one that a worker holds is locked and stays.
    const job = await queue.getJob(runId);
    if (!job) return;
    const state = await job.getState();
    if (state !== 'waiting' && state !== 'delayed' && state !== 'prioritized') return;
    try {
      await job.remove();
    } catch {
      return; // a worker took it meanwhile: it sees the mark
    }
    await appendEntry(this.redis, runId, { type: 'cancelled' });
  }
}

/** One run as its stream tells it: turns entries back into engine events and a RunResult. */
class RemoteRun {
  private readonly outputs: OutputFile[] = [];
  private readonly pending: OutputFile[] = [];
  private readonly emittedOutputs = new Set<string>();
  private filesPerNode = new Map<string, number>();
  private workerId = '';
  started = false;

  constructor(
    private readonly runId: string,
    private readonly onEvent: (e: ExecutionEvent) => void,
    private readonly onWorker: (name: string) => void,
    private readonly files: OutputStore,
  ) {}

  async apply(entry: StreamEntry, bytes: Buffer | undefined): Promise<RunResult | undefined> {
    switch (entry.type) {
      case 'attempt':
        // A retry (the first worker died) starts the graph over; its files replace the first attempt's.
        this.started = true;
        this.workerId = entry.worker_id;
        this.filesPerNode = new Map();
        this.pending.length = 0; // files of a node the dead attempt never announced come again
        this.onWorker(entry.worker);
        return undefined;
      case 'preview':
        this.onEvent({ type: 'preview', node: entry.node, step: entry.step, steps: entry.steps, png: bytes ?? Buffer.alloc(0) });
        return undefined;
      case 'file': {
        const index = this.filesPerNode.get(entry.node) ?? 0;
        this.filesPerNode.set(entry.node, index + 1);
        this.pending.push(await this.files.store(this.runId, this.workerId, entry, index, bytes ?? Buffer.alloc(0)));
        return undefined;
      }
      case 'output': {
        const files = this.pending.filter((f) => f.node === entry.node);
        this.pending.splice(0, this.pending.length, ...this.pending.filter((f) => f.node !== entry.node));
        const fresh = files.filter((f) => !this.outputs.some((o) => o.name === f.name && o.kind === f.kind));
        this.outputs.push(...fresh);
        // A retried attempt re-sends outputs the first one already announced: the same files, announced once.
        if (!this.emittedOutputs.has(entry.node)) {
          this.emittedOutputs.add(entry.node);
          this.onEvent({ type: 'output', node: entry.node, files });
        }
        return undefined;
      }
      case 'done':
        return { outputs: this.outputs, timings: entry.timings, unetCalls: entry.unetCalls, cachedNodes: entry.cachedNodes, models: [], ms: entry.ms };
      case 'error':
        // The worker already put it in a client's words (toRunError, redacted against its roots): kept as it is.
        throw new ReportedRunError(entry.error);
      case 'cancelled':
        throw new RunCancelledError();
      default:
        this.onEvent(entry);
        return undefined;
    }
  }
}
