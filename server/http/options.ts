import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveMaxRunMemory } from '../execution/run-memory-budget.js';
import type { SessionIsolation } from '../runtime/session-channel.js';
import type { ProfilerEvent } from '../sd/activation-profiler.js';
import { isLoopbackHost } from './auth.js';

export interface ServerOptions {
  /** Interface to listen on; anything but loopback requires a token. Default 127.0.0.1. */
  host?: string;
  /** Default 8188; 0 picks a free port. */
  port?: number;
  /** Bearer token required on /api and /ws when set. */
  token?: string;
  modelsRoot: string;
  inputRoot: string;
  outputRoot: string;
  /** Folder of the SQLite database (queue and history). Default .fusegraph. */
  dataDir?: string;
  /** Bundled example graphs. Default <repo>/graphs. */
  graphsDir?: string;
  /** Built editor served at /. Default <repo>/dist/client. */
  clientDir?: string;
  /** Runs executed at once. Default 1. */
  concurrency?: number;
  /** Byte budget of loaded model sessions. */
  maxModelMemory?: number;
  /**
   * Refuse (400 too_large) a run whose estimated peak memory exceeds this many bytes (docs/api.md, Admission
   * control). Default half the memory free when the server started: the GPU's when LoadModel's `auto` picks CUDA or
   * WebGPU here and nvidia-smi reports it, else the RAM's.
   */
  maxRunMemory?: number;
  /** Byte budget of the cross-run node cache's tensors. Default 256 MiB. */
  maxCacheMemory?: number;
  /** Bytes of checkpoint builds kept in `<dataDir>/checkpoints`, least recently used removed first. Default 32 GiB. */
  maxCheckpointCache?: number;
  /**
   * Release loaded models (sessions, GPU memory, session threads) and the node cache after this many ms without a
   * run; the next run loads again. 0 = keep them. Default 600 000 (10 minutes).
   */
  unloadIdleMs?: number;
  /** Queued plus running runs one client_id may have; more is a 429 queue_full. Default 100. */
  maxQueuedPerClient?: number;
  /** Keep the newest N finished runs (and their output files); older ones are deleted. Default 10,000. */
  keepRuns?: number;
  /** Also delete finished runs (and their output files) older than D days. Default: no age limit. */
  keepDays?: number;
  /** A preview every N sampling steps; 0 = none. Default 5. */
  previewEvery?: number;
  /** Largest JSON body, in body-parser syntax. Default 5mb. */
  bodyLimit?: string;
  /** Largest PNG accepted by /api/graph-from-png. Default 20mb. */
  pngLimit?: string;
  /**
   * TEST-ONLY: mount /api/test/* and make every sampler step pass a step gate tests can hold. Default false, or
   * true when the environment has FUSEGRAPH_TEST_HOOKS=1. Never enable on a server people use.
   */
  testHooks?: boolean;
  /**
   * Scale-out: `redis://[:password@]host:port[/db]` or `rediss://` (TLS). Runs go to BullMQ on that Redis and
   * execute on `fusegraph worker` processes; SQLite stays the history. Default: none (runs execute here).
   */
  redis?: string;
  /** With a `rediss://` redis: a PEM file of a private CA to trust for it, besides Node's own CAs. */
  redisCa?: string;
  /** With `redis`: also run a worker in this process (on modelsRoot). Default false. */
  localWorker?: boolean;
  /** Intra-op threads per ONNX session. Default: every core. */
  threads?: number;
  /** Where each loaded model's ONNX sessions run (server/runtime/session-channel.ts). Default `process`. */
  sessionIsolation?: SessionIsolation;
  /** With `localWorker`: how long a dead worker's run waits before another takes it (ms). Default 30000. */
  lockMs?: number;
  /** Unsent bytes above which a WebSocket skips progress and preview frames. Default 4 MiB. */
  wsBacklogBytes?: number;
  /** Unsent bytes above which a WebSocket that stopped reading is dropped. Default 64 MiB. */
  wsMaxBacklogBytes?: number;
  /** Where server-side failures are reported. Default console.error. */
  log?: (message: string, err?: unknown) => void;
  /** Each outcome of measuring a model's UNet activations (activation-profiler.ts): tests observe it. */
  onActivationEvent?: (e: ProfilerEvent) => void;
}

export type ResolvedOptions = Required<Omit<ServerOptions, 'token' | 'maxModelMemory' | 'maxCacheMemory' | 'maxCheckpointCache' | 'keepDays' | 'redis' | 'redisCa' | 'threads' | 'lockMs' | 'wsBacklogBytes' | 'wsMaxBacklogBytes' | 'onActivationEvent'>> &
  Pick<ServerOptions, 'token' | 'maxModelMemory' | 'maxCacheMemory' | 'maxCheckpointCache' | 'keepDays' | 'redis' | 'redisCa' | 'threads' | 'lockMs' | 'wsBacklogBytes' | 'wsMaxBacklogBytes' | 'onActivationEvent'>;

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

function defaultLog(message: string, err?: unknown): void {
  if (err === undefined) console.error(`[fusegraph] ${message}`);
  else console.error(`[fusegraph] ${message}:`, err);
}

function check(ok: boolean, message: string): void {
  if (!ok) throw new Error(message);
}

/** Fills defaults and refuses unsafe or meaningless settings before anything is opened. */
export function resolveOptions(o: ServerOptions): ResolvedOptions {
  const host = o.host ?? '127.0.0.1';
  const token = o.token === '' ? undefined : o.token;
  check(
    token !== undefined || isLoopbackHost(host),
    `refusing to listen on ${host} without a token: anyone who can reach it could run graphs and read outputs. ` +
      'Pass a token (--token) or listen on 127.0.0.1.',
  );
  const port = o.port ?? 8188;
  check(Number.isInteger(port) && port >= 0 && port <= 65535, `port must be an integer 0–65535, got ${port}`);
  const concurrency = o.concurrency ?? 1;
  check(Number.isInteger(concurrency) && concurrency >= 1, `concurrency must be an integer ≥ 1, got ${concurrency}`);
  const previewEvery = o.previewEvery ?? 5;
  check(Number.isInteger(previewEvery) && previewEvery >= 0, `previewEvery must be an integer ≥ 0, got ${previewEvery}`);
  const unloadIdleMs = o.unloadIdleMs ?? 600_000;
  check(Number.isFinite(unloadIdleMs) && unloadIdleMs >= 0, `unloadIdleMs must be a non-negative number of ms, got ${unloadIdleMs}`);
  const log = o.log ?? defaultLog;
  const maxRunMemory = resolveMaxRunMemory(o.maxRunMemory, { provider: 'auto', log });
  const maxQueuedPerClient = o.maxQueuedPerClient ?? 100;
  check(Number.isInteger(maxQueuedPerClient) && maxQueuedPerClient >= 1, `maxQueuedPerClient must be an integer ≥ 1, got ${maxQueuedPerClient}`);
  const keepRuns = o.keepRuns ?? 10_000;
  check(Number.isInteger(keepRuns) && keepRuns >= 0, `keepRuns must be an integer ≥ 0, got ${keepRuns}`);
  if (o.keepDays !== undefined) check(Number.isFinite(o.keepDays) && o.keepDays > 0, `keepDays must be a positive number, got ${o.keepDays}`);
  if (o.maxCacheMemory !== undefined) {
    check(Number.isFinite(o.maxCacheMemory) && o.maxCacheMemory >= 0, `maxCacheMemory must be a number of bytes ≥ 0, got ${o.maxCacheMemory}`);
  }
  if (o.maxCheckpointCache !== undefined) {
    check(Number.isFinite(o.maxCheckpointCache) && o.maxCheckpointCache >= 0, `maxCheckpointCache must be a number of bytes ≥ 0, got ${o.maxCheckpointCache}`);
  }
  if (o.maxModelMemory !== undefined) {
    check(Number.isFinite(o.maxModelMemory) && o.maxModelMemory > 0, `maxModelMemory must be a positive number of bytes, got ${o.maxModelMemory}`);
  }
  check(o.localWorker !== true || o.redis !== undefined, 'a local worker (--local-worker) needs --redis: without it the server executes runs itself');
  check(o.redisCa === undefined || o.redis !== undefined, '--redis-ca needs --redis (a rediss:// URL)');
  if (o.threads !== undefined) check(Number.isInteger(o.threads) && o.threads >= 1, `threads must be an integer ≥ 1, got ${o.threads}`);
  return {
    host,
    port,
    token,
    modelsRoot: resolve(o.modelsRoot),
    inputRoot: resolve(o.inputRoot),
    outputRoot: resolve(o.outputRoot),
    dataDir: resolve(o.dataDir ?? '.fusegraph'),
    graphsDir: resolve(o.graphsDir ?? resolve(REPO_ROOT, 'graphs')),
    clientDir: resolve(o.clientDir ?? resolve(REPO_ROOT, 'dist/client')),
    concurrency,
    maxModelMemory: o.maxModelMemory,
    maxRunMemory,
    unloadIdleMs,
    maxCacheMemory: o.maxCacheMemory,
    maxCheckpointCache: o.maxCheckpointCache,
    maxQueuedPerClient,
    keepRuns,
    keepDays: o.keepDays,
    previewEvery,
    bodyLimit: o.bodyLimit ?? '5mb',
    pngLimit: o.pngLimit ?? '20mb',
    testHooks: o.testHooks ?? process.env.FUSEGRAPH_TEST_HOOKS === '1',
    redis: o.redis,
    redisCa: o.redisCa,
    localWorker: o.localWorker ?? false,
    threads: o.threads,
    sessionIsolation: o.sessionIsolation ?? 'process',
    lockMs: o.lockMs,
    log,
    wsBacklogBytes: o.wsBacklogBytes,
    wsMaxBacklogBytes: o.wsMaxBacklogBytes,
    onActivationEvent: o.onActivationEvent,
  };
}
