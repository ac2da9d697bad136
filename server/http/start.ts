import { mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { createServer, type Server } from 'node:http';
import { executeGraph } from '../execution/executor.js';
import { preflightGraph } from '../execution/preflight.js';
import { redactPaths } from '../engine/redact.js';
import { StepGate } from '../engine/step-gate.js';
import { adminQueues } from './admin-queues.js';
import { createApp } from './app.js';
import { resolveOptions, type ServerOptions } from './options.js';
import { RunQueue } from '../services/run-queue.js';
import { submitter } from '../services/submit-run.js';
import { RunStore } from '../services/run-store.js';
import { modelResidency } from '../services/model-residency.js';
import { RedisBackend } from '../services/distributed/redis-backend.js';
import { RemoteGate } from '../services/distributed/remote-gate.js';
import { FuseGraphWorker } from '../services/distributed/worker.js';
import { WsHub } from './ws-hub.js';

export type { ServerOptions } from './options.js';

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** Stops listening, aborts running runs (they run again on the next start) and releases models and the database. */
  close(): Promise<void>;
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(err.code === 'EADDRINUSE' ? new Error(`port ${port} on ${host} is already in use; pick another with --port`) : err);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const address = server.address();
      resolve(typeof address === 'object' && address !== null ? address.port : port);
    });
  });
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const o = resolveOptions(options);
  mkdirSync(o.outputRoot, { recursive: true });
  // Scale-out (--redis): runs execute on workers through BullMQ; everything else below stays as in local mode.
  const scaleOut = o.redis !== undefined
    ? await RedisBackend.connect({ url: o.redis, ca: o.redisCa, outputRoot: o.outputRoot, previewEvery: o.previewEvery, log: o.log })
    : undefined;
  const store = new RunStore(o.dataDir);
  // Scale-out: the API node executes nothing, so it measures nothing (a --local-worker measures for itself).
  const residency = modelResidency({
    ...(scaleOut ? {} : { dataDir: o.dataDir }),
    maxModelMemory: o.maxModelMemory, maxCacheMemory: o.maxCacheMemory, threads: o.threads, isolation: o.sessionIsolation,
    ...(o.maxCheckpointCache !== undefined ? { maxCheckpointCache: o.maxCheckpointCache } : {}),
    unloadIdleMs: o.unloadIdleMs, log: o.log, onActivationEvent: o.onActivationEvent,
  });
  const { models, cache, idle, activations } = residency;
  const roots = { models: o.modelsRoot, input: o.inputRoot, output: o.outputRoot };
  const stepGate = o.testHooks && !scaleOut ? new StepGate() : undefined;
  const admission = { maxRunMemory: o.maxRunMemory, ...(activations ? { activations } : {}) };
  const queue = new RunQueue({
    store,
    concurrency: o.concurrency,
    log: o.log,
    redact: (text) => redactPaths(text, roots),
    // Names come from the store, which only holds names the output nodes wrote: one plain segment each.
    removeOutput: (name) => (path.basename(name) === name ? rm(path.join(o.outputRoot, name), { force: true }) : Promise.resolve()),
    maxActivePerClient: o.maxQueuedPerClient,
    keepRuns: o.keepRuns,
    ...(o.keepDays !== undefined ? { keepDays: o.keepDays } : {}),
    ...(scaleOut ? { capacity: () => scaleOut.capacity() } : {}),
    // A run submitted by this process runs its plan as admitted; one re-queued by a restart is prepared again first.
    execute: scaleOut
      ? scaleOut.execute
      : (graph, ctx) => idle.around(() => executeGraph(ctx.plan ?? graph, {
        roots, models, cache, signal: ctx.signal, onEvent: ctx.onEvent, previewEvery: o.previewEvery, stepGate, admission,
      })),
  });
  if (scaleOut) scaleOut.onCapacity = () => queue.wake();
  const localWorker = scaleOut && o.localWorker
    ? await FuseGraphWorker.start({
      redisUrl: o.redis!, redisCa: o.redisCa, modelsRoot: o.modelsRoot, inputRoot: o.inputRoot, name: 'local', concurrency: o.concurrency,
      testHooks: o.testHooks, log: o.log, unloadIdleMs: o.unloadIdleMs, maxRunMemory: o.maxRunMemory, dataDir: o.dataDir,
      sessionIsolation: o.sessionIsolation,
      ...(o.threads !== undefined ? { threads: o.threads } : {}),
      ...(o.maxModelMemory !== undefined ? { maxModelMemory: o.maxModelMemory } : {}),
      ...(o.lockMs !== undefined ? { lockMs: o.lockMs } : {}),
    })
    : undefined;
  // One submission and check path for HTTP and WebSocket. With scale-out the model folders live on the workers: the
  // API node checks that a live worker serves the run's models, and the worker admits the run (sizes, steps, memory)
  // against its own folders before any step.
  const submit = submitter(queue, scaleOut
    ? (plan) => Promise.resolve(scaleOut.routingIssues(plan))
    : (plan) => preflightGraph(plan, { roots, ...admission }));
  const hub = new WsHub({
    queue, submit, token: o.token, outputRoot: o.outputRoot, log: o.log,
    ...(o.wsBacklogBytes !== undefined ? { backlogBytes: o.wsBacklogBytes } : {}),
    ...(o.wsMaxBacklogBytes !== undefined ? { maxBacklogBytes: o.wsMaxBacklogBytes } : {}),
  });
  const board = scaleOut ? adminQueues(o.token, scaleOut.runQueues()) : undefined;
  if (scaleOut && board) scaleOut.onQueue = board.add;
  const app = createApp({
    queue,
    listModels: scaleOut ? () => scaleOut.listModels() : () => models.listModels(o.modelsRoot),
    modelsRoot: o.modelsRoot,
    outputRoot: o.outputRoot,
    graphsDir: o.graphsDir,
    clientDir: o.clientDir,
    token: o.token,
    bodyLimit: o.bodyLimit,
    pngLimit: o.pngLimit,
    log: o.log,
    stepGate: scaleOut && o.testHooks ? new RemoteGate(scaleOut.redis) : stepGate,
    submit,
    wsStats: () => hub.stats(),
    ...(scaleOut ? { listWorkers: () => scaleOut.workers() } : {}),
    ...(board ? { adminQueues: board.router } : {}),
  });
  const server = createServer(app);
  server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));

  let port: number;
  try {
    port = await listen(server, o.port, o.host);
  } catch (err) {
    await hub.close();
    await localWorker?.close(true);
    await scaleOut?.close();
    await residency.close();
    store.close();
    throw err;
  }
  const { requeued, failed } = queue.start();
  if (requeued.length) o.log(`re-queued ${requeued.length} run(s) interrupted by the last shutdown`);
  if (failed.length) o.log(`gave up on ${failed.length} run(s) that were interrupted too often`);
  if (scaleOut) o.log(`scale-out: runs go to the workers on Redis ${new URL(o.redis!).host}${localWorker ? ' (one runs in this process)' : ''}`);
  if (o.testHooks) o.log('TEST HOOKS ON: /api/test/* is mounted and sampler steps pass a step gate; never use this server for real work');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.close();
      await queue.close();
      await localWorker?.close(true);
      await scaleOut?.close();
      server.closeAllConnections();
      await stopped;
      await residency.close();
      store.close();
    })();
    return closing;
  };

  const urlHost = o.host.includes(':') ? `[${o.host}]` : o.host;
  return { url: `http://${urlHost}:${port}`, port, close };
}
