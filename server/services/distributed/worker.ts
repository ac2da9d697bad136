import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Graph } from '../../../nodes/graph-format.js';
import { NodeCache } from '../../engine/cache.js';
import { redactPaths } from '../../engine/redact.js';
import { RunCancelledError } from '../../engine/errors.js';
import { executeGraph } from '../../execution/executor.js';
import { StepGate, type GateState } from '../../engine/step-gate.js';
import { ModelManager } from '../../sd/model-manager.js';
import type { ProviderChoice } from '../../runtime/providers.js';
import { findModelFolders, inspectModelFolder } from '../../sd/model-folder.js';
import { sha256File } from '../../sd/sd-model.js';
import { toRunError } from '../run-error.js';
import type { WorkerInfo, WorkerModel } from '../../../nodes/protocol.js';
import type { RunJobData } from './redis-backend.js';
import { BULL_PREFIX, checkReachable, connectRedis, KEYS } from './redis.js';
import { announceWorker, retireWorker } from './registry.js';
import { serves } from './routing.js';
import { StreamWriter } from './stream.js';

export interface WorkerOptions {
  readonly redisUrl: string;
  readonly modelsRoot: string;
  readonly inputRoot: string;
  /** Where runs write before their files go to the API node. Default: a new temp folder. */
  readonly outputRoot?: string;
  /** Used by LoadModel nodes whose provider is `auto`. */
  readonly provider?: ProviderChoice;
  /** Runs executed at once. Default 1. */
  readonly concurrency?: number;
  /** Shown in GET /api/workers. Default host-pid. */
  readonly name?: string;
  /** Intra-op threads per ONNX session. Default: every core. */
  readonly threads?: number;
  readonly maxModelMemory?: number;
  /** TEST-ONLY: sampler steps pass a step gate the API node's /api/test/gate drives through Redis. */
  readonly testHooks?: boolean;
  /**
   * How long a run's lock lives without renewal; a killed worker's run is retried on another after about this
   * (BullMQ's stalled-job check). Default 30 000 ms.
   */
  readonly lockMs?: number;
  readonly heartbeatMs?: number;
  readonly log?: (message: string, err?: unknown) => void;
}

/** A gate command from the API node: applied in `seq` order, each acknowledged in this worker's reported state. */
interface GateCommand {
  readonly seq: number;
  readonly op: 'hold' | 'open' | 'release' | 'ignore_cancel';
  readonly n?: number;
  readonly on?: boolean;
}

/**
 * A scale-out worker: announces its model folders (with each model.onnx's SHA-256) and provider, consumes the
 * BullMQ queues of the model sets it serves, executes runs with sessions kept resident across runs (as serve
 * does), streams every event and output back through Redis, and honours cancels. It listens on no port.
 */
export class FuseGraphWorker {
  readonly id = randomUUID();
  readonly name: string;
  private readonly models: ModelManager;
  private readonly cache = new NodeCache();
  private readonly consumers = new Map<string, Worker>();
  private readonly running = new Map<string, AbortController>();
  private readonly waiters: (() => void)[] = [];
  private readonly gate: StepGate | undefined;
  private readonly log: (message: string, err?: unknown) => void;
  private readonly concurrency: number;
  private readonly startedAt = Date.now();
  private active = 0;
  private runsDone = 0;
  private gateSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** Set by a forced close: running runs stop without a last word, so BullMQ retries them on another worker. */
  private abandoning = false;

  private constructor(
    private readonly opts: WorkerOptions,
    private readonly redis: Redis,
    private readonly sub: Redis,
    private readonly offered: readonly WorkerModel[],
    private readonly outputRoot: string,
  ) {
    this.name = opts.name ?? `${os.hostname()}-${process.pid}`;
    this.concurrency = opts.concurrency ?? 1;
    this.log = opts.log ?? ((m, err) => (err === undefined ? console.error(`[fusegraph worker] ${m}`) : console.error(`[fusegraph worker] ${m}:`, err)));
    this.models = new ModelManager({
      ...(opts.maxModelMemory !== undefined ? { maxBytes: opts.maxModelMemory } : {}),
      ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    });
    this.gate = opts.testHooks ? new StepGate((s) => this.reportGate(s)) : undefined;
  }

  static async start(opts: WorkerOptions): Promise<FuseGraphWorker> {
    if (opts.concurrency !== undefined && (!Number.isInteger(opts.concurrency) || opts.concurrency < 1)) {
      throw new Error(`--concurrency must be an integer ≥ 1, got ${opts.concurrency}`);
    }
    const offered = await scanModels(path.resolve(opts.modelsRoot), opts.log);
    const outputRoot = opts.outputRoot ? path.resolve(opts.outputRoot) : await mkdtemp(path.join(os.tmpdir(), 'fusegraph-worker-'));
    const redis = connectRedis(opts.redisUrl, 'worker');
    try {
      await checkReachable(redis, opts.redisUrl);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    const sub = redis.duplicate();
    sub.on('error', () => {});
    const worker = new FuseGraphWorker(opts, redis, sub, offered, outputRoot);
    await worker.listen();
    return worker;
  }

  get testHooks(): boolean {
    return this.gate !== undefined;
  }

  /** Model paths this worker serves. */
  modelPaths(): string[] {
    return this.offered.map((m) => m.path);
  }

  /**
   * Stops taking runs and lets the running ones finish (`force`: abandons them; BullMQ retries them on another
   * worker once their lock lapses), then leaves the registry.
   */
  close(force = false): Promise<void> {
    if (force) {
      this.abandoning = true;
      for (const controller of this.running.values()) controller.abort();
    }
    this.closing ??= (async () => {
      clearInterval(this.timer);
      await Promise.all([...this.consumers.values()].map((c) => c.close(force)));
      this.sub.disconnect();
      await retireWorker(this.redis, this.id).catch(() => undefined);
      this.redis.disconnect();
      await this.models.dispose();
    })();
    return this.closing;
  }

  private async listen(): Promise<void> {
    this.sub.on('message', (channel: string, message: string) => {
      if (channel === KEYS.cancelChannel) this.running.get(message)?.abort();
      else if (channel === KEYS.routesChannel) void this.syncRoutes();
      else if (channel === KEYS.gateCommands) this.applyGate(JSON.parse(message) as GateCommand);
    });
    await this.sub.subscribe(KEYS.cancelChannel, KEYS.routesChannel, ...(this.gate ? [KEYS.gateCommands] : []));
    if (this.gate) this.reportGate(this.gate.state());
    await this.beat();
    await this.syncRoutes();
    const every = this.opts.heartbeatMs ?? 1000;
    this.timer = setInterval(() => {
      // Routes are re-read with each beat too: a route announced while Redis was unreachable is not missed.
      void this.beat().then(() => this.syncRoutes()).catch((err: unknown) => this.log('heartbeat failed', err));
    }, every);
  }

  private info(): WorkerInfo {
    const root = path.resolve(this.opts.modelsRoot);
    const resident = this.models.loadedKeys().map((key) => path.relative(root, key.slice(0, key.lastIndexOf('|'))).split(path.sep).join('/'));
    return {
      id: this.id,
      name: this.name,
      provider: this.opts.provider ?? 'auto',
      concurrency: this.concurrency,
      models: [...this.offered],
      resident: [...new Set(resident)],
      running: [...this.running.keys()],
      runs_done: this.runsDone,
      started_at: this.startedAt,
      last_heartbeat: Date.now(),
    };
  }

  private async beat(): Promise<void> {
    if (this.closing) return;
    await announceWorker(this.redis, this.info(), 4 * (this.opts.heartbeatMs ?? 1000));
  }

  /** Consumes the queue of every announced model set this worker serves whole. */
  private async syncRoutes(): Promise<void> {
    if (this.closing) return;
    const routes = await this.redis.hgetall(KEYS.routes);
    for (const [id, json] of Object.entries(routes)) {
      if (this.consumers.has(id) || !serves({ models: [...this.offered] }, JSON.parse(json) as string[])) continue;
      const lockMs = this.opts.lockMs ?? 30_000;
      const connection = connectRedis(this.opts.redisUrl, 'worker-queue');
      const consumer = new Worker<RunJobData>(`runs-${id}`, (job) => this.process(job), {
        connection,
        prefix: BULL_PREFIX,
        concurrency: this.concurrency,
        lockDuration: lockMs,
        stalledInterval: lockMs,
        maxStalledCount: 2,
      });
      consumer.on('error', (err) => this.log(`queue runs-${id}`, err));
      consumer.on('closed', () => connection.disconnect());
      this.consumers.set(id, consumer);
    }
  }

  /** One slot per concurrent run across all queues this worker consumes. */
  private async acquire(): Promise<void> {
    if (this.active < this.concurrency) {
      this.active++;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active--;
  }

  private async process(job: Job<RunJobData>): Promise<void> {
    const runId = job.id!;
    await this.acquire();
    const controller = new AbortController();
    this.running.set(runId, controller);
    const stream = new StreamWriter(this.redis, runId);
    const roots = { models: this.opts.modelsRoot, input: this.opts.inputRoot, output: this.outputRoot };
    try {
      if (await this.redis.exists(KEYS.cancelled(runId))) {
        await stream.end({ type: 'cancelled' });
        return;
      }
      stream.push({ type: 'attempt', worker: this.name, worker_id: this.id, attempt: job.attemptsStarted });
      void this.beat();
      try {
        const result = await executeGraph(this.withProvider(job.data.graph), {
          roots,
          models: this.models,
          cache: this.cache,
          signal: controller.signal,
          onEvent: (e) => stream.event(e),
          previewEvery: job.data.previewEvery,
          stepGate: this.gate,
        });
        await stream.end({ type: 'done', timings: result.timings, unetCalls: result.unetCalls, cachedNodes: result.cachedNodes, ms: result.ms });
      } catch (err) {
        // Abandoned: leave the job active and unlocked; BullMQ's stalled check hands it to another worker.
        if (this.abandoning) await new Promise<never>(() => {});
        if (controller.signal.aborted || err instanceof RunCancelledError) {
          await stream.end({ type: 'cancelled' });
        } else {
          // What reaches clients names files relative to the worker's roots; the full error stays in the worker's log.
          const error = toRunError(err, (text) => redactPaths(text, roots));
          this.log(`run ${runId} failed${error.node ? ` at node "${error.node}"` : ''}`, err);
          await stream.end({ type: 'error', error });
        }
      }
      this.runsDone++;
    } finally {
      this.running.delete(runId);
      this.release();
      void this.beat().catch(() => undefined);
    }
  }

  /** LoadModel nodes left on `auto` use this worker's --provider. */
  private withProvider(graph: Graph): Graph {
    const provider = this.opts.provider;
    if (!provider || provider === 'auto') return graph;
    const nodes = Object.fromEntries(Object.entries(graph.nodes).map(([id, node]) => {
      if (node.type !== 'LoadModel' || (node.params?.provider ?? 'auto') !== 'auto') return [id, node];
      return [id, { ...node, params: { ...node.params, provider } }];
    }));
    return { ...graph, nodes };
  }

  private applyGate(command: GateCommand): void {
    const gate = this.gate!;
    this.gateSeq = Math.max(this.gateSeq, command.seq);
    if (command.op === 'hold') gate.hold();
    else if (command.op === 'open') gate.open();
    else if (command.op === 'ignore_cancel') gate.setIgnoreCancel(command.on === true);
    else gate.release(command.n ?? 0);
    this.reportGate(gate.state());
  }

  private reportGate(state: GateState): void {
    const report = { ...state, seq: this.gateSeq, worker: this.name };
    void this.redis.hset(KEYS.gateStates, this.id, JSON.stringify(report)).catch(() => undefined);
  }
}

/** Every model folder under the root, with the SHA-256 of each part's model.onnx (what PNG metadata records). */
async function scanModels(root: string, log: WorkerOptions['log']): Promise<WorkerModel[]> {
  const models: WorkerModel[] = [];
  for (const rel of await findModelFolders(root)) {
    try {
      const folder = await inspectModelFolder(path.join(root, rel));
      const sha256: Record<string, string> = {};
      for (const [part, file] of Object.entries(folder.parts)) sha256[part] = await sha256File(file);
      models.push({ path: rel.split(path.sep).join('/'), bytes: folder.bytes, sha256 });
    } catch (err) {
      log?.(`model folder ${rel} is unusable; not offering it`, err);
    }
  }
  return models;
}
