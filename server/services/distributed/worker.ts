import { randomUUID } from 'node:crypto';
import { mkdtemp, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { redactPaths } from '../../engine/redact.js';
import { RunCancelledError } from '../../engine/errors.js';
import { executeGraph, type ExecuteOptions } from '../../execution/executor.js';
import { resolveMaxRunMemory } from '../../execution/run-memory-budget.js';
import { StepGate, type GateState } from '../../engine/step-gate.js';
import type { ProviderChoice } from '../../runtime/providers.js';
import type { SessionIsolation } from '../../runtime/session-channel.js';
import { findModelFolders, inspectModelFolder } from '../../sd/model-folder.js';
import { modelFileKind } from '../../sd/model-file-kind.js';
import { findCheckpointFiles } from '../../sd/model-source.js';
import { sha256File } from '../../sd/sd-model.js';
import { toRunError } from '../run-error.js';
import { modelResidency, type ModelResidency } from '../model-residency.js';
import type { WorkerInfo, WorkerModel } from '../../../nodes/protocol.js';
import type { RunJobData } from './redis-backend.js';
import { BULL_PREFIX, checkReachable, connectRedis, KEYS, redisTarget, type RedisTarget } from './redis.js';
import { allResident, Grace, residentElsewhere } from './preference.js';
import { announceWorker, readWorkers, retireWorker } from './registry.js';
import { serves } from './routing.js';
import { StreamWriter, type Terminal } from './stream.js';

export interface WorkerOptions {
  readonly redisUrl: string;
  /** `--redis-ca`: a PEM file of the CA to trust for a `rediss://` Redis, besides Node's own. */
  readonly redisCa?: string;
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
  /** Where each model's sessions run (session-channel.ts). Default `process`. */
  readonly sessionIsolation?: SessionIsolation;
  readonly maxModelMemory?: number;
  /** Bytes of checkpoint builds kept in `<dataDir>/checkpoints` (serve's --max-checkpoint-cache). */
  readonly maxCheckpointCache?: number | undefined;
  /** TEST-ONLY: sampler steps pass a step gate the API node's /api/test/gate drives through Redis. */
  readonly testHooks?: boolean;
  /**
   * How long a run's lock lives without renewal; a killed worker's run is retried on another after about this
   * (BullMQ's stalled-job check). Default 30 000 ms.
   */
  readonly lockMs?: number;
  readonly heartbeatMs?: number;
  /**
   * How long this worker leaves a run whose models it has not loaded to a worker that has them loaded and a free
   * slot (preference.ts). Default 2000 ms; 0 turns the preference off.
   */
  readonly residentGraceMs?: number;
  /** Release loaded models and the node cache after this many ms without a run (0: never). Default 600 000. */
  readonly unloadIdleMs?: number;
  /**
   * Refuse (the run ends `error`, `too_large` on the NoiseLatent) a run whose estimated peak memory exceeds this.
   * Default: half the free memory of this worker's GPU (nvidia-smi), else of its RAM (run-memory-budget.ts).
   */
  readonly maxRunMemory?: number;
  /** Where this worker keeps its measured UNet activations (activation-store.ts). Default: none are measured. */
  readonly dataDir?: string;
  readonly log?: (message: string, err?: unknown) => void;
}

/** A gate command from the API node: applied in `seq` order, each acknowledged in this worker's reported state. */
interface GateCommand {
  readonly seq: number;
  readonly op: 'hold' | 'open' | 'release' | 'ignore_cancel';
  readonly n?: number;
  readonly on?: boolean;
}

/** A model set this worker serves: BullMQ's Worker, used for manual fetching, and a Queue to look at its head. */
interface Consumer {
  readonly paths: readonly string[];
  readonly worker: Worker<RunJobData>;
  readonly queue: Queue<RunJobData>;
}

/**
 * A scale-out worker: announces its model folders (with each model.onnx's SHA-256) and provider, takes runs from
 * the BullMQ queues of the model sets it serves, executes them with sessions kept resident across runs (as serve
 * does), streams every event and output back through Redis, and honours cancels. It listens on no port.
 *
 * Runs are fetched by hand (BullMQ's `Worker.getNextJob`, the "manually fetching jobs" pattern) rather than by
 * BullMQ's own fetch loop, for two reasons. (1) Which queue to take from, and whether to take at all, is decided
 * per fetch: sets whose models are loaded here come first, and a set whose models are not is left, for a bounded
 * grace, to another worker that has them loaded and a free slot (preference.ts). One BullMQ queue per set, shared by
 * every worker that serves it, stays the unit of routing, so kill -9 recovery (BullMQ's stalled-job check, started
 * here by hand), cancel, API-node and Redis restarts work as before. Per-worker queues with the API node choosing
 * would need the API node to re-route a dead worker's jobs itself; BullMQ's auto-fetch loop cannot be told to skip
 * one fetch. (2) A run is fetched only when a slot is free: with one auto-fetching BullMQ Worker per queue, a busy
 * worker took jobs from its other queues and sat on them waiting for a slot while another worker could run them.
 * Fetches happen when the API node announces a queued run, when a slot frees, when a grace ends and with each
 * heartbeat (which also picks up jobs the stalled-job check moved back to their queue).
 */
export class FuseGraphWorker {
  readonly id = randomUUID();
  readonly name: string;
  private readonly residency: ModelResidency;
  private readonly admission: ExecuteOptions['admission'];
  private readonly consumers = new Map<string, Consumer>();
  private readonly running = new Map<string, AbortController>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly gate: StepGate | undefined;
  private readonly log: (message: string, err?: unknown) => void;
  private readonly concurrency: number;
  private readonly lockMs: number;
  private readonly grace: Grace;
  private readonly startedAt = Date.now();
  private runsDone = 0;
  private gateSeq = 0;
  private timer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private graceDue = 0;
  private pumping = false;
  private pumpAgain = false;
  private stopping = false;
  private closing: Promise<void> | undefined;
  /** Set by a forced close: running runs stop without a last word, so BullMQ retries them on another worker. */
  private abandoning = false;

  private constructor(
    private readonly opts: WorkerOptions,
    private readonly target: RedisTarget,
    private readonly redis: Redis,
    private readonly sub: Redis,
    private readonly offered: readonly WorkerModel[],
    private readonly outputRoot: string,
  ) {
    this.name = opts.name ?? `${os.hostname()}-${process.pid}`;
    this.concurrency = opts.concurrency ?? 1;
    this.lockMs = opts.lockMs ?? 30_000;
    this.grace = new Grace(opts.residentGraceMs ?? 2000);
    this.log = opts.log ?? ((m, err) => (err === undefined ? console.error(`[fusegraph worker] ${m}`) : console.error(`[fusegraph worker] ${m}:`, err)));
    // As on serve: sessions kept across runs, each UNet's activations measured on its first load, released when idle.
    this.residency = modelResidency({
      ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
      maxModelMemory: opts.maxModelMemory, threads: opts.threads, unloadIdleMs: opts.unloadIdleMs ?? 600_000, log: this.log,
      ...(opts.maxCheckpointCache !== undefined ? { maxCheckpointCache: opts.maxCheckpointCache } : {}),
      ...(opts.sessionIsolation !== undefined ? { isolation: opts.sessionIsolation } : {}),
      onReleased: () => this.beat(), // the registry's resident list steers runs (see Grace); keep it true
    });
    this.admission = {
      maxRunMemory: resolveMaxRunMemory(opts.maxRunMemory, { provider: opts.provider ?? 'auto', log: this.log }),
      ...(this.residency.activations ? { activations: this.residency.activations } : {}),
    };
    this.gate = opts.testHooks ? new StepGate((s) => this.reportGate(s)) : undefined;
  }

  static async start(opts: WorkerOptions): Promise<FuseGraphWorker> {
    if (opts.concurrency !== undefined && (!Number.isInteger(opts.concurrency) || opts.concurrency < 1)) {
      throw new Error(`--concurrency must be an integer ≥ 1, got ${opts.concurrency}`);
    }
    if (opts.residentGraceMs !== undefined && !(Number.isFinite(opts.residentGraceMs) && opts.residentGraceMs >= 0)) {
      throw new Error(`--resident-grace-ms must be a number of milliseconds ≥ 0, got ${opts.residentGraceMs}`);
    }
    const target = redisTarget(opts.redisUrl, opts.redisCa);
    const offered = await scanModels(path.resolve(opts.modelsRoot), opts.log);
    const outputRoot = opts.outputRoot ? path.resolve(opts.outputRoot) : await mkdtemp(path.join(os.tmpdir(), 'fusegraph-worker-'));
    const redis = connectRedis(target, 'worker');
    try {
      await checkReachable(redis, opts.redisUrl);
    } catch (err) {
      redis.disconnect();
      throw err;
    }
    const sub = redis.duplicate();
    sub.on('error', () => {});
    const worker = new FuseGraphWorker(opts, target, redis, sub, offered, outputRoot);
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
    this.stopping = true;
    if (force) {
      this.abandoning = true;
      for (const controller of this.running.values()) controller.abort();
    }
    this.closing ??= (async () => {
      clearInterval(this.timer);
      clearTimeout(this.graceTimer);
      // An abandoned run may sit in an ONNX call for a while; it writes nothing more, so it is not waited for.
      if (!force) await Promise.all(this.inFlight);
      await Promise.all([...this.consumers.values()].map((c) => Promise.all([c.worker.close(force), c.queue.close()])));
      this.sub.disconnect();
      await retireWorker(this.redis, this.id).catch(() => undefined);
      this.redis.disconnect();
      await this.residency.close();
    })();
    return this.closing;
  }

  private async listen(): Promise<void> {
    this.sub.on('message', (channel: string, message: string) => {
      if (channel === KEYS.cancelChannel) this.running.get(message)?.abort();
      else if (channel === KEYS.queued) void this.syncRoutes().then(() => this.wake(), (err: unknown) => this.log('could not read the routes', err));
      else if (channel === KEYS.gateCommands) this.applyGate(JSON.parse(message) as GateCommand);
    });
    await this.sub.subscribe(KEYS.cancelChannel, KEYS.queued, ...(this.gate ? [KEYS.gateCommands] : []));
    if (this.gate) this.reportGate(this.gate.state());
    await this.beat();
    await this.syncRoutes();
    this.wake();
    const every = this.opts.heartbeatMs ?? 1000;
    this.timer = setInterval(() => {
      // Routes are re-read and queues looked at with each beat too: a route announced while Redis was unreachable,
      // or a job the stalled-job check put back, is not missed.
      void this.beat().then(() => this.syncRoutes()).then(() => this.wake(), (err: unknown) => this.log('heartbeat failed', err));
    }, every);
  }

  /** Model folders whose sessions are loaded now. */
  private resident(): string[] {
    const root = path.resolve(this.opts.modelsRoot);
    const paths = this.residency.models.loadedKeys().map((key) => path.relative(root, key.slice(0, key.lastIndexOf('|'))).split(path.sep).join('/'));
    return [...new Set(paths)];
  }

  private info(): WorkerInfo {
    return {
      id: this.id,
      name: this.name,
      provider: this.opts.provider ?? 'auto',
      concurrency: this.concurrency,
      models: [...this.offered],
      resident: this.resident(),
      running: [...this.running.keys()],
      runs_done: this.runsDone,
      started_at: this.startedAt,
      last_heartbeat: Date.now(),
    };
  }

  private async beat(): Promise<void> {
    if (this.stopping) return;
    await announceWorker(this.redis, this.info(), 4 * (this.opts.heartbeatMs ?? 1000));
  }

  /** Consumes the queue of every announced model set this worker serves whole. */
  private async syncRoutes(): Promise<void> {
    if (this.stopping) return;
    const routes = await this.redis.hgetall(KEYS.routes);
    for (const [id, json] of Object.entries(routes)) {
      const paths = JSON.parse(json) as string[];
      if (this.consumers.has(id) || !serves({ models: [...this.offered] }, paths)) continue;
      const name = `runs-${id}`;
      const connection = connectRedis(this.target, 'worker-queue');
      const worker = new Worker<RunJobData>(name, null, {
        connection,
        prefix: BULL_PREFIX,
        autorun: false,
        lockDuration: this.lockMs,
        stalledInterval: this.lockMs,
        maxStalledCount: 2,
      });
      worker.on('error', (err) => this.log(`queue ${name}`, err));
      worker.on('closed', () => connection.disconnect());
      const queue = new Queue<RunJobData>(name, { connection: this.redis, prefix: BULL_PREFIX });
      queue.on('error', (err) => this.log(`queue ${name}`, err));
      this.consumers.set(id, { paths, worker, queue });
      // Fetching by hand, the stalled-job check (which hands a dead worker's runs to the living) is started by hand.
      await worker.startStalledCheckTimer();
    }
  }

  /** Looks for runs to take now; one look at a time, and one more if asked for during it. */
  private wake(): void {
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void (async () => {
      try {
        do {
          this.pumpAgain = false;
          while (!this.stopping && this.running.size < this.concurrency && (await this.fetchOne()));
        } while (this.pumpAgain && !this.stopping);
      } catch (err) {
        // Redis unreachable, most likely: the next heartbeat looks again.
        this.log('could not fetch a run', err);
      } finally {
        this.pumping = false;
      }
    })();
  }

  /** Takes one run if a queue this worker may take from now has one; sets whose models are loaded here first. */
  private async fetchOne(): Promise<boolean> {
    const resident = this.resident();
    const consumers = [...this.consumers.values()].sort((a, b) => Number(allResident(resident, b.paths)) - Number(allResident(resident, a.paths)));
    let workers: WorkerInfo[] | undefined;
    for (const c of consumers) {
      if (this.grace.ms > 0 && !allResident(resident, c.paths)) {
        workers ??= await readWorkers(this.redis);
        if (residentElsewhere(this.id, c.paths, workers)) {
          const [head] = await c.queue.getRanges(['wait'], 0, 0, true);
          if (head === undefined) continue;
          const left = this.grace.left(head);
          if (left > 0) {
            this.wakeIn(left);
            continue;
          }
        }
      }
      const token = randomUUID();
      const job = await c.worker.getNextJob(token, { block: false });
      if (!job) continue;
      this.start(job, token);
      return true;
    }
    return false;
  }

  /** Looks again when the earliest grace running out ends (a later one is seen by that look, or a heartbeat's). */
  private wakeIn(ms: number): void {
    const due = Date.now() + ms;
    if (this.graceTimer !== undefined && this.graceDue <= due) return;
    clearTimeout(this.graceTimer);
    this.graceDue = due;
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      this.wake();
    }, ms + 5);
  }

  private start(job: Job<RunJobData>, token: string): void {
    const runId = job.id!;
    const controller = new AbortController();
    this.running.set(runId, controller);
    // Fetching by hand, the lock is renewed by hand: a worker that dies stops renewing, and the job is retried.
    const renew = setInterval(() => {
      job.extendLock(token, this.lockMs).catch((err: unknown) => this.log(`could not renew the lock of run ${runId}`, err));
    }, this.lockMs / 2);
    const done = this.process(job, controller)
      .then(async (finished) => {
        clearInterval(renew);
        if (finished) await job.moveToCompleted(null, token, false);
      })
      .catch((err: unknown) => {
        clearInterval(renew);
        // Redis failed under the run (its last word or its job's completion): BullMQ retries it once its lock lapses.
        this.log(`run ${runId} could not be finished in Redis`, err);
      })
      .finally(() => this.inFlight.delete(done));
    this.inFlight.add(done);
  }

  /** Runs one job; false when it was abandoned (left to BullMQ's stalled-job check). */
  private async process(job: Job<RunJobData>, controller: AbortController): Promise<boolean> {
    const runId = job.id!;
    const stream = new StreamWriter(this.redis, runId);
    const roots = { models: this.opts.modelsRoot, input: this.opts.inputRoot, output: this.outputRoot };
    let last: Terminal;
    try {
      // Announced before the first step, so other workers see this slot taken when they decide where a run goes.
      await this.beat().catch(() => undefined);
      if (await this.redis.exists(KEYS.cancelled(runId))) {
        last = { type: 'cancelled' };
      } else {
        stream.push({ type: 'attempt', worker: this.name, worker_id: this.id, attempt: job.attemptsStarted });
        last = await this.execute(job, controller, stream, roots);
        this.runsDone++;
      }
    } catch (err) {
      // Abandoned: the job stays active; once its lock lapses, BullMQ's stalled check hands it to another worker.
      if (this.abandoning) return false;
      throw err;
    } finally {
      this.running.delete(runId);
    }
    // The slot shows free before the run's last word, so a run submitted on seeing this one end finds it free.
    await this.beat().catch(() => undefined);
    this.wake();
    await stream.end(last);
    return true;
  }

  private async execute(job: Job<RunJobData>, controller: AbortController, stream: StreamWriter, roots: { models: string; input: string; output: string }): Promise<Terminal> {
    const runId = job.id!;
    try {
      // The graph as submitted: validated, planned and admitted here (the model folders are this worker's), with this
      // worker's --provider standing for LoadModel's `auto` (the graph itself, and so its PNGs, keep `auto`).
      const result = await this.residency.idle.around(() => executeGraph(job.data.graph, {
        roots,
        models: this.residency.models,
        cache: this.residency.cache,
        signal: controller.signal,
        onEvent: (e) => stream.event(e),
        previewEvery: job.data.previewEvery,
        stepGate: this.gate,
        admission: this.admission,
        ...(this.opts.provider && this.opts.provider !== 'auto' ? { defaultProvider: this.opts.provider } : {}),
      }));
      return { type: 'done', timings: result.timings, unetCalls: result.unetCalls, cachedNodes: result.cachedNodes, ms: result.ms };
    } catch (err) {
      if (this.abandoning) throw err;
      if (controller.signal.aborted || err instanceof RunCancelledError) return { type: 'cancelled' };
      // What reaches clients names files relative to the worker's roots; the full error stays in the worker's log.
      const error = toRunError(err, (text) => redactPaths(text, roots));
      this.log(`run ${runId} failed${error.node ? ` at node "${error.node}"` : ''}`, err);
      return { type: 'error', error };
    }
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

/**
 * Every model folder under the root, with the SHA-256 of each part's model.onnx (what PNG metadata records), and every
 * checkpoint or VAE file, with the file's SHA-256: a run naming one is routed to the workers that have that file.
 */
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
  for (const rel of await findCheckpointFiles(root)) {
    const file = path.join(root, rel);
    try {
      const what = await modelFileKind(file);
      if (what.kind === 'unusable') throw new Error(what.reason);
      models.push({ path: rel, kind: what.kind, bytes: (await stat(file)).size, sha256: { checkpoint: await sha256File(file) } });
    } catch (err) {
      log?.(`model file ${rel} is unusable; not offering it`, err);
    }
  }
  return models;
}
