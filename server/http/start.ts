import { mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { NodeCache } from '../engine/cache.js';
import { executeGraph } from '../engine/executor.js';
import { StepGate } from '../engine/step-gate.js';
import { ModelManager } from '../runtime/model-manager.js';
import { createApp } from './app.js';
import { resolveOptions, type ServerOptions } from './options.js';
import { RunQueue } from '../services/run-queue.js';
import { RunStore } from '../services/run-store.js';
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
  const store = new RunStore(o.dataDir);
  // One model manager and one node cache for all runs: sessions load once, unchanged nodes are served cached.
  const models = new ModelManager(o.maxModelMemory !== undefined ? { maxBytes: o.maxModelMemory } : {});
  const cache = new NodeCache();
  const roots = { models: o.modelsRoot, input: o.inputRoot, output: o.outputRoot };
  const stepGate = o.testHooks ? new StepGate() : undefined;
  const queue = new RunQueue({
    store,
    concurrency: o.concurrency,
    log: o.log,
    execute: (graph, ctx) =>
      executeGraph(graph, { roots, models, cache, signal: ctx.signal, onEvent: ctx.onEvent, previewEvery: o.previewEvery, stepGate }),
  });
  const hub = new WsHub({
    queue, token: o.token, outputRoot: o.outputRoot, log: o.log,
    ...(o.wsBacklogBytes !== undefined ? { backlogBytes: o.wsBacklogBytes } : {}),
    ...(o.wsMaxBacklogBytes !== undefined ? { maxBacklogBytes: o.wsMaxBacklogBytes } : {}),
  });
  const app = createApp({
    queue,
    listModels: () => models.listModels(o.modelsRoot),
    outputRoot: o.outputRoot,
    graphsDir: o.graphsDir,
    clientDir: o.clientDir,
    token: o.token,
    bodyLimit: o.bodyLimit,
    pngLimit: o.pngLimit,
    log: o.log,
    stepGate,
    wsStats: () => hub.stats(),
  });
  const server = createServer(app);
  server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));

  let port: number;
  try {
    port = await listen(server, o.port, o.host);
  } catch (err) {
    await hub.close();
    await models.dispose();
    store.close();
    throw err;
  }
  const { requeued, failed } = queue.start();
  if (requeued.length) o.log(`re-queued ${requeued.length} run(s) interrupted by the last shutdown`);
  if (failed.length) o.log(`gave up on ${failed.length} run(s) that were interrupted too often`);
  if (stepGate) o.log('TEST HOOKS ON: /api/test/* is mounted and sampler steps pass a step gate; never use this server for real work');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      await hub.close();
      await queue.close();
      server.closeAllConnections();
      await stopped;
      await models.dispose();
      store.close();
    })();
    return closing;
  };

  const urlHost = o.host.includes(':') ? `[${o.host}]` : o.host;
  return { url: `http://${urlHost}:${port}`, port, close };
}
