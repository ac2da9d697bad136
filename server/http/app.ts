import express, { type Express, type Router } from 'express';
import { ADMIN_QUEUES_PATH } from './admin-queues.js';
import { requireSameOrigin, requireToken } from './auth.js';
import { clientRoutes } from './client-static.js';
import { errorMiddleware } from './error-middleware.js';
import { HttpError } from './http-error.js';
import { filesRoutes } from './routes/files.js';
import { graphFromPngRoutes } from './routes/graph-from-png.js';
import { graphsRoutes } from './routes/graphs.js';
import { modelsRoutes } from './routes/models.js';
import { nodesRoutes } from './routes/nodes.js';
import { promptsRoutes } from './routes/prompts.js';
import { queueRoutes } from './routes/queue.js';
import { runsRoutes } from './routes/runs.js';
import { testHookRoutes, type GateControl } from './routes/test-hooks.js';
import { workersRoutes } from './routes/workers.js';
import { checkJsonLimits, JsonLimitError } from '../../nodes/json-limits.js';
import type { WorkerInfo } from '../../nodes/protocol.js';
import type { RunQueue } from '../services/run-queue.js';
import type { Submitter } from '../services/submit-run.js';
import type { SocketStats } from './ws-hub.js';

export interface AppDeps {
  readonly queue: RunQueue;
  readonly listModels: () => Promise<unknown[]>;
  /** The models root the prompt routes read embeddings from (models/embeddings). */
  readonly modelsRoot: string;
  readonly outputRoot: string;
  readonly graphsDir: string;
  readonly clientDir: string;
  readonly token: string | undefined;
  readonly bodyLimit: string;
  readonly pngLimit: string;
  readonly log: (message: string, err?: unknown) => void;
  /** Validation, admission and queue limits: the one way runs are submitted (shared with the WebSocket). */
  readonly submit: Submitter;
  /** Test-only step gate; its routes are mounted only when it is given. */
  readonly stepGate?: GateControl;
  /** Each WebSocket's backlog, for the test hooks. */
  readonly wsStats?: () => readonly SocketStats[];
  /** Scale-out: the live workers (GET /api/workers). */
  readonly listWorkers?: () => Promise<WorkerInfo[]>;
  /** Scale-out: the BullMQ dashboard (admin-queues.ts), mounted at /admin/queues. */
  readonly adminQueues?: Router;
}

/**
 * Refuses a JSON body nested deeper than JSON_LIMITS.maxDepth before body-parser parses it (issue 27): a 4.9 MB body
 * of nested arrays used to hold the event loop for seconds. Its size is bounded by `bodyLimit` already (413).
 */
function checkJsonBody(body: Buffer): void {
  try {
    checkJsonLimits(body, { what: 'the request body', maxLength: Number.MAX_SAFE_INTEGER });
  } catch (err) {
    if (!(err instanceof JsonLimitError)) throw err;
    // body-parser passes an error with a status on as it is (error-middleware.ts renders it).
    throw new HttpError(400, 'json_too_deep', err.message);
  }
}

/** The HTTP side of the server, without listening, so it is wired in one place (start.ts). */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.use((_req, res, next) => {
    res.setHeader('X-Content-Type-Options', 'nosniff');
    next();
  });

  const api = express.Router();
  api.use(requireSameOrigin(deps.token));
  api.use(requireToken(deps.token));
  api.use(express.json({ limit: deps.bodyLimit, verify: (_req, _res, body) => checkJsonBody(body) }));
  api.use(nodesRoutes());
  api.use(modelsRoutes(deps.listModels));
  api.use(promptsRoutes(deps.modelsRoot));
  api.use(runsRoutes(deps.queue, deps.submit));
  api.use(workersRoutes(deps.listWorkers));
  api.use(queueRoutes(deps.queue));
  api.use(filesRoutes(deps.outputRoot));
  api.use(graphsRoutes(deps.graphsDir, deps.log));
  api.use(graphFromPngRoutes(deps.pngLimit));
  if (deps.stepGate) api.use(testHookRoutes(deps.stepGate, deps.wsStats));
  api.use((req, _res, next) => {
    next(new HttpError(404, 'not_found', `no API route ${req.method} ${req.baseUrl}${req.path}`));
  });

  app.use('/api', api);
  if (deps.adminQueues) app.use(ADMIN_QUEUES_PATH, deps.adminQueues);
  app.use(clientRoutes(deps.clientDir));
  app.use(errorMiddleware(deps.log));
  return app;
}
